// Runs ganache for tools/devchain (DevChain): `node run.js <host> <port> <options JSON>`.
//
// Why a launcher instead of the ganache CLI: the chain must never outlive the Python process that
// started it, even when that one is SIGKILLed. The parent holds our stdin open; end of file on it,
// or a new parent pid (we were re-parented), means the parent is gone and we exit. That works the
// same whichever thread started us, unlike PR_SET_PDEATHSIG, which fires when the *thread* exits.
"use strict";
const ganache = require("ganache");

const [host, port, raw] = process.argv.slice(2);
const options = JSON.parse(raw || "{}");
const parent = process.ppid;
let server = null;
let stopping = false;

function stop(why) {
  if (stopping) return;
  stopping = true;
  console.log(`devchain: stopping (${why})`);
  const done = () => process.exit(0);
  // Closing can hang on a half-open connection; the process exits regardless.
  setTimeout(done, 2000).unref();
  (server ? server.close() : Promise.resolve()).then(done, done);
}

for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"]) process.on(signal, () => stop(signal));
process.stdin.on("end", () => stop("parent closed stdin"));
process.stdin.on("error", () => stop("stdin error"));
process.stdin.resume();
setInterval(() => {
  if (process.ppid !== parent) stop("parent exited");
}, 500);

server = ganache.server(options);
server.listen(Number(port), host).then(
  () => console.log(`devchain: listening on http://${host}:${port}`),
  (error) => {
    console.error(`devchain: cannot listen on ${host}:${port}: ${error.message}`);
    process.exit(3);
  },
);
