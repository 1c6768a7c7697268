// astrid: one binary, subcommands like git. main() only dispatches and turns errors into a message
// and an exit status; every subcommand lives in cmd_*.cpp.
#include <cstring>
#include <iostream>
#include <string_view>

#include "app/commands.hpp"
#include "astrid/core/error.hpp"
#include "astrid/core/version.hpp"

namespace {
void usage(std::ostream& out) {
    out << "astrid " << astrid::version() << " - difference imaging campaigns on MPI clusters\n\n"
        << "usage: astrid <command> [options]   (astrid <command> --help for its options)\n\n"
        << "commands:\n"
        << "  simulate   write a synthetic campaign (FITS archive, SAI catalog, truth, job file)\n"
        << "  catalog    parse a target catalog and report parsed/rejected rows with reasons\n"
        << "  run        process a campaign on MPI ranks into one parallel-HDF5 file\n"
        << "  stack      co-add exposures of one epoch onto the first one's grid and flux scale\n"
        << "  diff       register and subtract one reference/science pair (ZOGY), write FITS + JSON\n"
        << "  inspect    summarise a run file, list failures, export a table as CSV\n"
        << "  merge      join the outputs of a job array's slices (slice = i/N) into one run file\n"
        << "  import-ztf convert ZTF alert packets (Avro) into the /training layout, labelled by drb\n"
        << "  query      look catalog targets up in MAST/IRSA, pair references with science epochs: a manifest\n"
        << "  stage      download a manifest's products into a cache (idempotent, resumable)\n";
}
}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
        usage(argc < 2 ? std::cerr : std::cout);
        return argc < 2 ? 1 : 0;
    }
    const std::string_view cmd = argv[1];
    if (cmd == "--version") {
        std::cout << "astrid " << astrid::version() << " (git " << astrid::gitSha() << ")\n";
        return 0;
    }
    try {
        if (cmd == "simulate") return astrid::app::cmdSimulate(argc - 1, argv + 1);
        if (cmd == "catalog") return astrid::app::cmdCatalog(argc - 1, argv + 1);
        if (cmd == "run") return astrid::app::cmdRun(argc - 1, argv + 1);
        if (cmd == "stack") return astrid::app::cmdStack(argc - 1, argv + 1);
        if (cmd == "diff") return astrid::app::cmdDiff(argc - 1, argv + 1);
        if (cmd == "inspect") return astrid::app::cmdInspect(argc - 1, argv + 1);
        if (cmd == "import-ztf") return astrid::app::cmdImportZtf(argc - 1, argv + 1);
        if (cmd == "merge") return astrid::app::cmdMerge(argc - 1, argv + 1);
        if (cmd == "query") return astrid::app::cmdQuery(argc - 1, argv + 1);
        if (cmd == "stage") return astrid::app::cmdStage(argc - 1, argv + 1);
        std::cerr << "astrid: unknown command '" << cmd << "'\n\n";
        usage(std::cerr);
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "astrid " << cmd << ": error: " << e.what() << "\n";
        return 1;
    }
}
