// datapump: the command-line tool. Until the daemon lands, `datapump read` is the main job:
// it reads a file through the shared cache and reports what the cache did.
#include "datapump/base/log.hpp"
#include "datapump/fs/registry.hpp"
#include "read_command.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>

int main(int argc, char** argv) {
    CLI::App app{"datapump: zero-copy data-path engine — command-line tool"};
    app.require_subcommand(1);
    std::string log_level = "warn";
    app.add_option("--log", log_level, "log level: trace, debug, info, warn, error, off")->capture_default_str();

    datapump::cli::read_options read;
    auto* cmd = app.add_subcommand("read", "read a file through the shared cache with N concurrent readers");
    cmd->add_option("path", read.path, "file to read, relative to --root")->required();
    cmd->add_option("--root", read.root, "directory the provider serves")->capture_default_str();
    cmd->add_option("--provider", read.provider, "provider: direct (O_DIRECT into the cache) or posix (page cache)")
        ->capture_default_str();
    cmd->add_option("--readers", read.readers, "concurrent readers of the file")
        ->check(CLI::Range(1, 256))->capture_default_str();
    cmd->add_option("--buffer-kib", read.buffer_kib, "cache buffer (block) size in KiB, multiple of 4")
        ->check(CLI::Range(4, 65536))->capture_default_str();
    cmd->add_option("--cache-mib", read.cache_mib, "cache arena size in MiB")
        ->check(CLI::Range(1, 65536))->capture_default_str();
    cmd->add_option("--readahead", read.readahead, "blocks each reader prefetches ahead")
        ->check(CLI::Range(0, 4096))->capture_default_str();
    cmd->add_option("--chunk-kib", read.chunk_kib, "bytes each reader borrows per step, in KiB")
        ->check(CLI::Range(4, 1048576))->capture_default_str();
    cmd->add_flag("!--no-checksum", read.checksum, "do not touch the bytes (benchmarks: like dd, which never looks)");
    cmd->add_flag("--verify", read.verify, "compare every byte with a plain pread of the file");
    cmd->add_flag("--machine", read.machine, "print key=value lines for scripts");
    cmd->add_flag("--no-fixed-buffers", read.no_fixed, "direct: do not register the arena with io_uring");

    auto* providers = app.add_subcommand("providers", "list the registered file-system providers");

    CLI11_PARSE(app, argc, argv);
    if (!datapump::configure_logging(log_level)) {
        std::fprintf(stderr, "datapump: unknown log level '%s' (trace, debug, info, warn, error, off)\n",
                     log_level.c_str());
        return 2;
    }
    if (*providers) {
        datapump::fs::registry reg;
        for (const auto& name : reg.names()) {
            const auto* ops = reg.find(name);
            std::printf("%-8s %s\n", name.c_str(), ops->description);
        }
        return 0;
    }
    return datapump::cli::run_read(read);
}
