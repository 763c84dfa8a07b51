// Registers the pattern provider with a registry at run time and streams one file through the
// cache: what a third party does to add a provider without touching the engine.
#include "pattern_provider.hpp"

#include <datapump/base/log.hpp>
#include <datapump/fs/registry.hpp>

#include <cstdio>

int main() {
    using namespace datapump;
    auto cache = cache::file_cache::create({.buffers = {.buffer_size = 64 * 1024, .buffer_count = 64}});
    if (!cache) {
        std::fprintf(stderr, "%s\n", describe(cache.error()).c_str());
        return 1;
    }
    fs::registry providers;
    if (auto added = providers.add(pattern_fs::provider()); !added) {
        std::fprintf(stderr, "%s\n", describe(added.error(), "pattern").c_str());
        return 1;
    }
    auto inst = providers.instantiate("pattern", {.root = "/", .cache = cache->get()});
    if (!inst) {
        std::fprintf(stderr, "%s\n", describe(inst.error()).c_str());
        return 1;
    }
    auto f = inst->open("42/1000000");
    if (!f) {
        std::fprintf(stderr, "%s\n", describe(f.error(), "42/1000000").c_str());
        return 1;
    }
    std::uint64_t total = 0;
    std::uint64_t mismatches = 0;
    for (std::uint64_t off = 0; off < 1000000; off += 300000) {
        auto loans = f->loan_read(off, 300000);
        if (!loans) {
            std::fprintf(stderr, "%s\n", describe(loans.error(), "42/1000000").c_str());
            return 1;
        }
        for (const auto& loan : *loans) {
            for (std::size_t i = 0; i < loan.size(); ++i) {
                mismatches += loan.bytes()[i] != pattern_fs::pattern_byte(42, loan.file_offset() + i) ? 1U : 0U;
            }
            total += loan.size();
        }
    }
    std::printf("providers:");
    for (const auto& name : providers.names()) {
        std::printf(" %s", name.c_str());
    }
    std::printf("\nread %llu bytes of pattern 42/1000000 through the cache, %llu mismatches\n",
                static_cast<unsigned long long>(total), static_cast<unsigned long long>(mismatches));
    return mismatches == 0 && total == 1000000 ? 0 : 1;
}
