/** The plugin's name, as kong.yml enables it (a leaf module: the schema and the state both need it). */
export const PLUGIN_NAME = 'token-meter';
