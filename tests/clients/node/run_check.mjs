// Runs the check named on the command line from CHECKS and sets the exit status:
// 0 passed, 1 failed (the reason on stderr), 2 no such check.
export async function runCheck(checks, name) {
  const run = checks[name];
  if (!run) {
    console.error(`unknown check ${name}; known: ${Object.keys(checks).join(', ')}`);
    process.exit(2);
  }
  try {
    await run();
  } catch (e) {
    console.error(e?.stack ?? e);
    process.exit(1);
  }
}
