// datapump: the command-line tool. Until the daemon lands, `datapump read` is the main job:
// it reads a file through the shared cache and reports what the cache did.
//
// Exit codes: 0 done, 1 the work failed (the message says what and on what), 2 usage error
// (the same as datapumpd and most Unix tools; CLI11's own codes, 105-109, mean nothing to a shell).
#include "datapump/base/log.hpp"
#include "datapump/fs/registry.hpp"
#include "read_command.hpp"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <charconv>
#include <cstdio>
#include <map>
#include <system_error>

namespace {

constexpr int exit_usage = 2;

}  // namespace

int main(int argc, char** argv) {
    // Named, so that usage says `datapump`, not the path it was started by.
    CLI::App app{"datapump: zero-copy data-path engine — command-line tool", "datapump"};
    app.set_version_flag("--version", std::string("datapump ") + DATAPUMP_VERSION);
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
        ->check(CLI::Range(4, 65536))
        ->check(CLI::Validator(
            [](const std::string& text) {
                // O_DIRECT reads whole 4 KiB pages.
                unsigned long kib = 0;
                const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), kib);
                const bool ok = ec == std::errc{} && end == text.data() + text.size() && kib % 4 == 0;
                return ok ? std::string{} : std::string("must be a multiple of 4 (O_DIRECT alignment)");
            },
            "MULTIPLE OF 4"))
        ->capture_default_str();
    cmd->add_option("--cache-mib", read.cache_mib, "cache arena size in MiB")
        ->check(CLI::Range(1, 65536))->capture_default_str();
    cmd->add_option("--readahead", read.readahead, "blocks each reader prefetches ahead")
        ->check(CLI::Range(0, 4096))->capture_default_str();
    cmd->add_option("--chunk-kib", read.chunk_kib, "bytes each reader borrows per step, in KiB")
        ->check(CLI::Range(4, 1048576))->capture_default_str();
    cmd->add_flag("!--no-checksum", read.checksum, "do not touch the bytes (benchmarks: like dd, which never looks)");
    cmd->add_flag("--verify", read.verify, "compare every byte with a plain pread of the file");
    auto* json = cmd->add_flag("--json", read.json, "print the report as one JSON object, for scripts");
    cmd->add_flag("--machine", read.machine, "deprecated, use --json: print key=value lines")->excludes(json);
    cmd->add_option("--progress", read.progress,
                    "progress line on stderr: auto (on a terminal), always, never")
        ->transform(CLI::CheckedTransformer(
            std::map<std::string, datapump::cli::progress_mode>{{"auto", datapump::cli::progress_mode::automatic},
                                                                {"always", datapump::cli::progress_mode::always},
                                                                {"never", datapump::cli::progress_mode::never}}))
        ->default_str("auto");
    cmd->add_flag("--no-fixed-buffers", read.no_fixed, "direct: do not register the arena with io_uring");

    bool providers_json = false;
    auto* providers = app.add_subcommand("providers", "list the registered file-system providers");
    providers->add_flag("--json", providers_json, "print a JSON array of {name, description}");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help and --version are "errors" with exit code 0: app.exit() prints them.
        const int rc = app.exit(e);
        return rc == 0 ? 0 : exit_usage;
    }
    if (!datapump::configure_logging(log_level)) {
        std::fprintf(stderr, "datapump: unknown log level '%s' (trace, debug, info, warn, error, off)\n",
                     log_level.c_str());
        return exit_usage;
    }
    if (*providers) {
        datapump::fs::registry reg;
        nlohmann::ordered_json list = nlohmann::ordered_json::array();
        for (const auto& name : reg.names()) {
            const auto* ops = reg.find(name);
            if (providers_json) {
                list.push_back({{"name", name}, {"description", ops->description}});
            } else {
                std::printf("%-8s %s\n", name.c_str(), ops->description);
            }
        }
        if (providers_json) {
            std::printf("%s\n", list.dump(2).c_str());
        }
        return 0;
    }
    if (read.machine) {
        std::fprintf(stderr, "datapump read: --machine is deprecated and will go; use --json\n");
    }
    return datapump::cli::run_read(read);
}
