#pragma once
// The subcommands of the `astrid` binary. Each takes the arguments after its name and returns the
// process exit status: 0 success, 1 error, 2 finished with failed targets (run) or skipped packets (import-ztf).
namespace astrid::app {
int cmdSimulate(int argc, char** argv);
int cmdCatalog(int argc, char** argv);
int cmdRun(int argc, char** argv);
int cmdStack(int argc, char** argv);
int cmdDiff(int argc, char** argv);
int cmdInspect(int argc, char** argv);
int cmdImportZtf(int argc, char** argv);
int cmdMerge(int argc, char** argv);
int cmdQuery(int argc, char** argv);
int cmdStage(int argc, char** argv);
}  // namespace astrid::app
