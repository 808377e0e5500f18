// npm scripts run with the `node` devDependency (Node 24) ahead of the system Node on PATH.
// If its binary is missing, npm silently falls back to an older Node: fail loudly instead.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  console.error(
    `Inferno needs Node.js 24 or newer; this is ${process.version}.\n` +
      'Run `npm ci` (it installs Node 24 from the npm registry as a devDependency) and check that install scripts for "node" are allowed.',
  );
  process.exit(1);
}
