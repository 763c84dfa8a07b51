#include "read_command.hpp"

#include "datapump/fs/registry.hpp"
#include "units.hpp"

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

namespace datapump::cli {

namespace {

// Bytes the kernel read from storage for this process so far (/proc/self/io read_bytes).
std::uint64_t process_disk_read_bytes() {
    std::ifstream io("/proc/self/io");
    std::string key;
    std::uint64_t value = 0;
    while (io >> key >> value) {
        if (key == "read_bytes:") {
            return value;
        }
    }
    return 0;
}

double cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// Order-dependent 64-bit checksum, cheap enough to run at memory speed.
std::uint64_t mix_in(std::uint64_t h, std::span<const std::byte> bytes) {
    std::size_t i = 0;
    for (; i + 8 <= bytes.size(); i += 8) {
        std::uint64_t w = 0;
        std::memcpy(&w, bytes.data() + i, 8);
        h = (h ^ w) * 0x100000001b3ULL + (h >> 29);
    }
    for (; i < bytes.size(); ++i) {
        h = (h ^ static_cast<std::uint64_t>(bytes[i])) * 0x100000001b3ULL;
    }
    return h;
}

struct reader_result {
    std::uint64_t bytes = 0;
    std::uint64_t loans = 0;
    std::uint64_t checksum = 0xcbf29ce484222325ULL;
    std::uint64_t mismatches = 0;
    std::string error;
};

}  // namespace

int run_read(const read_options& o) {
    cache::file_cache_config cfg;
    cfg.buffers.buffer_size = std::size_t{o.buffer_kib} * 1024;
    cfg.buffers.buffer_count = std::max<std::size_t>(2, std::size_t{o.cache_mib} * 1024 / o.buffer_kib);
    cfg.readahead_blocks = o.readahead;
    cfg.prefetch_batch = std::max<std::uint32_t>(1, std::min<std::uint32_t>(o.readahead, 16));
    // --buffer-kib is a multiple of 4 (checked as a usage error by main.cpp).
    auto cache = cache::file_cache::create(cfg);
    if (!cache) {
        std::fprintf(stderr, "datapump read: cannot create the cache: %s\n", describe(cache.error()).c_str());
        return 1;
    }
    fs::registry reg;
    auto inst = reg.instantiate(o.provider, {.root = o.root,
                                             .cache = cache->get(),
                                             .flags = o.no_fixed ? fs::config_no_fixed_buffers : 0U});
    if (!inst) {
        std::fprintf(stderr, "datapump read: cannot start provider '%s': %s\n", o.provider.c_str(),
                     describe(inst.error(), o.root).c_str());
        return 1;
    }
    auto file = inst->open(o.path);
    if (!file) {
        std::fprintf(stderr, "datapump read: cannot open: %s\n", describe(file.error(), o.path).c_str());
        return 1;
    }
    auto view = file->cached();
    if (!view) {
        std::fprintf(stderr, "datapump read: %s\n", describe(view.error(), o.path).c_str());
        return 1;
    }
    const std::uint64_t size = (*view)->size();
    (void)file->set_access_pattern({}, 0);

    const std::uint64_t disk_before = process_disk_read_bytes();
    const double cpu_before = cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    std::atomic<std::uint64_t> delivered{0};  // all readers' bytes so far, for the progress line
    std::optional<progress_line> progress;
    if (progress_wanted(o.progress, STDERR_FILENO)) {
        progress.emplace(stderr, "reading " + o.path, size * o.readers, delivered);
    }
    std::vector<reader_result> results(o.readers);
    std::vector<std::thread> threads;
    for (std::uint32_t r = 0; r < o.readers; ++r) {
        threads.emplace_back([&, r] {
            auto& res = results[r];
            unique_fd check_fd;
            std::vector<std::byte> expect;
            if (o.verify) {
                // A plain descriptor on the same file, opened beneath the same root by the shell's
                // path rules: the reference the cache's bytes are compared with.
                check_fd.reset(::open((o.root + "/" + o.path).c_str(), O_RDONLY | O_CLOEXEC));
            }
            cache::reader rd(**cache, *view);
            for (;;) {
                auto loans = rd.next(std::size_t{o.chunk_kib} * 1024);
                if (!loans) {
                    res.error = describe(loans.error(), o.path);
                    return;
                }
                if (loans->empty()) {
                    return;
                }
                std::uint64_t step = 0;
                for (const auto& l : *loans) {
                    step += l.size();
                    if (o.checksum) {
                        res.checksum = mix_in(res.checksum, l.bytes());
                    }
                    res.bytes += l.size();
                    ++res.loans;
                    if (check_fd) {
                        expect.resize(l.size());
                        const auto n = ::pread(check_fd.get(), expect.data(), l.size(),
                                               static_cast<off_t>(l.file_offset()));
                        if (n != static_cast<ssize_t>(l.size()) ||
                            std::memcmp(expect.data(), l.bytes().data(), l.size()) != 0) {
                            ++res.mismatches;
                        }
                    }
                }
                delivered.fetch_add(step, std::memory_order_relaxed);
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    if (progress) {
        progress->finish();
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu = cpu_seconds() - cpu_before;
    const std::uint64_t disk_bytes = process_disk_read_bytes() - disk_before;
    (*cache)->quiesce();
    const auto s = (*cache)->counters().snapshot();

    std::uint64_t total = 0;
    std::uint64_t loans = 0;
    std::uint64_t mismatches = 0;
    bool failed = false;
    bool same_checksum = true;
    for (const auto& r : results) {
        total += r.bytes;
        loans += r.loans;
        mismatches += r.mismatches;
        same_checksum = same_checksum && r.checksum == results[0].checksum;
        if (!r.error.empty()) {
            std::fprintf(stderr, "datapump read: a reader failed: %s\n", r.error.c_str());
            failed = true;
        }
    }
    if (s.loans_out != 0 || (*cache)->buffers().pinned_buffers() != 0) {
        std::fprintf(stderr, "datapump read: internal error: loans or pins outstanding after the run\n");
        failed = true;
    }
    const double gib = static_cast<double>(total) / (1024.0 * 1024.0 * 1024.0);
    const double rate = seconds > 0 ? static_cast<double>(total) / seconds : 0.0;
    const double cpu_per_gib = gib > 0 ? cpu / gib : 0.0;
    const bool ok = !failed && mismatches == 0 && same_checksum && total == size * o.readers;
    const std::string provider(inst->provider_name());
    if (o.json) {
        nlohmann::ordered_json j;
        j["path"] = o.path;
        j["provider"] = provider;
        j["readers"] = o.readers;
        j["file_bytes"] = size;
        j["bytes"] = total;
        j["seconds"] = seconds;
        j["bytes_per_second"] = rate;
        j["cpu_seconds"] = cpu;
        j["cpu_seconds_per_gib"] = cpu_per_gib;
        j["loans"] = loans;
        j["buffer_bytes"] = std::uint64_t{o.buffer_kib} * 1024;
        j["hits"] = s.hits;
        j["misses"] = s.misses;
        j["fallbacks"] = s.fallbacks;
        j["evictions"] = s.evictions;
        j["waits"] = s.waits;
        j["prefetch_reads"] = s.prefetch_reads;
        j["disk_reads"] = s.disk_reads;
        j["disk_read_bytes"] = s.disk_read_bytes;
        j["os_read_bytes"] = disk_bytes;
        if (o.checksum) {
            char hex[17] = {};
            std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(results[0].checksum));
            j["checksum"] = hex;
            j["readers_agree"] = same_checksum;
        } else {
            j["checksum"] = nullptr;
        }
        j["verified"] = o.verify;
        j["mismatches"] = mismatches;
        j["ok"] = ok;
        std::printf("%s\n", j.dump(2).c_str());
    } else if (o.machine) {
        std::printf("provider=%s\nreaders=%u\nfile_bytes=%llu\nbytes=%llu\nseconds=%.6f\nMBps=%.1f\n"
                    "cpu_seconds=%.4f\ncpu_s_per_gib=%.4f\nloans=%llu\nhits=%llu\nmisses=%llu\n"
                    "fallbacks=%llu\ndisk_reads=%llu\ndisk_read_bytes=%llu\nos_read_bytes=%llu\n"
                    "prefetch_reads=%llu\nevictions=%llu\nwaits=%llu\nmismatches=%llu\n",
                    provider.c_str(), o.readers,
                    static_cast<unsigned long long>(size), static_cast<unsigned long long>(total), seconds,
                    rate / 1e6, cpu, cpu_per_gib, static_cast<unsigned long long>(loans),
                    static_cast<unsigned long long>(s.hits), static_cast<unsigned long long>(s.misses),
                    static_cast<unsigned long long>(s.fallbacks), static_cast<unsigned long long>(s.disk_reads),
                    static_cast<unsigned long long>(s.disk_read_bytes), static_cast<unsigned long long>(disk_bytes),
                    static_cast<unsigned long long>(s.prefetch_reads), static_cast<unsigned long long>(s.evictions),
                    static_cast<unsigned long long>(s.waits), static_cast<unsigned long long>(mismatches));
    } else {
        std::printf("read %s through the '%s' provider: %u reader(s), %s each\n", o.path.c_str(), provider.c_str(),
                    o.readers, human_bytes(size).c_str());
        std::printf("  delivered   %s in %llu loans (buffers of %s), %.3f s, %s, %.3f CPU-s/GiB\n",
                    human_bytes(total).c_str(), static_cast<unsigned long long>(loans),
                    human_bytes(std::uint64_t{o.buffer_kib} * 1024).c_str(), seconds, human_rate(rate).c_str(),
                    cpu_per_gib);
        std::printf("  cache       %llu hits, %llu misses, %llu fallbacks, %llu evictions, %llu waits\n",
                    static_cast<unsigned long long>(s.hits), static_cast<unsigned long long>(s.misses),
                    static_cast<unsigned long long>(s.fallbacks), static_cast<unsigned long long>(s.evictions),
                    static_cast<unsigned long long>(s.waits));
        std::printf("  disk        %llu block reads, %s (%.3f x the file; the kernel counted %s)\n",
                    static_cast<unsigned long long>(s.disk_reads), human_bytes(s.disk_read_bytes).c_str(),
                    size > 0 ? static_cast<double>(s.disk_read_bytes) / static_cast<double>(size) : 0.0,
                    human_bytes(disk_bytes).c_str());
        std::printf("  prefetch    %llu blocks read ahead\n", static_cast<unsigned long long>(s.prefetch_reads));
        if (o.checksum) {
            std::printf("  checksum    %016llx%s\n", static_cast<unsigned long long>(results[0].checksum),
                        same_checksum ? " (every reader saw the same bytes)" : " (READERS DISAGREE)");
        }
        if (o.verify) {
            std::printf("  verify      %s\n", mismatches == 0 ? "byte-exact against pread" : "MISMATCHES FOUND");
        }
    }
    return ok ? 0 : 1;
}

}  // namespace datapump::cli
