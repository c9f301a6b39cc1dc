// Loaded into a plugin server with NODE_OPTIONS=--require: samples its CPU from start; on
// SIGUSR2 writes the profile so far to $KTA_PROFILE_DIR and starts a new one.
const inspector = require('node:inspector');
const fs = require('node:fs');
const path = require('node:path');
const dir = process.env.KTA_PROFILE_DIR || '/tmp';
const s = new inspector.Session();
s.connect();
const start = () =>
  s.post('Profiler.enable', () =>
    s.post('Profiler.setSamplingInterval', { interval: 250 }, () => s.post('Profiler.start')),
  );
start();
process.on('SIGUSR2', () => {
  s.post('Profiler.stop', (err, r) => {
    if (!err)
      fs.writeFileSync(
        path.join(dir, `${process.pid}-${Date.now()}.cpuprofile`),
        JSON.stringify(r.profile),
      );
    start();
  });
});
