/** Typed, path-aware reads of an untyped YAML object, collecting Kong-style error lines. */
export type Obj = Record<string, unknown>;

export const isObj = (v: unknown): v is Obj =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

export class FieldReader {
  constructor(
    readonly obj: Obj,
    readonly path: string,
    readonly errors: string[],
  ) {}

  fail(field: string, msg: string): undefined {
    this.errors.push(`${this.path}.${field}: ${msg}`);
    return undefined;
  }

  allowOnly(fields: string[]): void {
    for (const k of Object.keys(this.obj)) {
      if (!fields.includes(k)) this.fail(k, 'unknown field');
    }
  }

  string(field: string, required = false): string | undefined {
    const v = this.obj[field];
    if (v === undefined || v === null)
      return required ? this.fail(field, 'required field missing') : undefined;
    if (typeof v !== 'string') return this.fail(field, 'expected a string');
    if (v === '') return this.fail(field, 'length must be at least 1');
    return v;
  }

  bool(field: string, dflt: boolean): boolean {
    const v = this.obj[field];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'boolean') return this.fail(field, 'expected a boolean') ?? dflt;
    return v;
  }

  integer(field: string, dflt: number, min: number, max: number): number {
    const v = this.obj[field];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v))
      return this.fail(field, 'expected an integer') ?? dflt;
    if (v < min || v > max)
      return this.fail(field, `value should be between ${min} and ${max}`) ?? dflt;
    return v;
  }

  strings(field: string): string[] | undefined {
    const v = this.obj[field];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v)) return this.fail(field, 'expected an array');
    const out: string[] = [];
    v.forEach((item, i) => {
      if (typeof item !== 'string' || item === '')
        this.fail(`${field}[${i + 1}]`, 'expected a string');
      else out.push(item);
    });
    return out;
  }

  list(field: string): Obj[] {
    const v = this.obj[field];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) return this.fail(field, 'expected an array') ?? [];
    return v.filter((item, i) => {
      if (isObj(item)) return true;
      this.fail(`${field}[${i + 1}]`, 'expected a record');
      return false;
    });
  }
}

/** A declarative config Kong would refuse, with every problem found. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid declarative config:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}
