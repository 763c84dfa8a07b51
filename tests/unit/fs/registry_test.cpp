// Registry: the built-in list, every add() refusal, use counts (instances, open files) and that
// nothing is torn down under an open file.
#include "unit/fs/fs_fixture.hpp"

namespace datapump::fs {
namespace {

using test::temp_dir;

// A table like posix's, renamed, for add() to accept or refuse.
provider_ops posix_copy(const registry& r, const char* name) {
    provider_ops ops = *r.find("posix");
    ops.name = name;
    return ops;
}

TEST(registry, built_in_providers_come_from_the_list) {
    registry r;
    const auto names = r.names();
    ASSERT_EQ(names.size(), 2U);
    EXPECT_EQ(names[0], "posix");
    EXPECT_EQ(names[1], "direct");
    for (const auto& n : names) {
        const provider_ops* ops = r.find(n);
        ASSERT_NE(ops, nullptr);
        EXPECT_EQ(ops->abi_version, provider_abi_version);
        EXPECT_EQ(ops->size, sizeof(provider_ops));
        EXPECT_TRUE(check_provider(ops).has_value());
        EXPECT_EQ(r.instances(n), 0U);
    }
    EXPECT_EQ(r.find("nope"), nullptr);
}

TEST(registry, add_rejects_null_and_bad_abi_and_small_tables) {
    registry r;
    auto null_add = r.add(nullptr);
    ASSERT_FALSE(null_add);
    EXPECT_EQ(null_add.error().code, errc::invalid_argument);

    static provider_ops bad_abi = posix_copy(r, "bad_abi");
    bad_abi.abi_version = provider_abi_version + 1;
    auto e1 = r.add(&bad_abi);
    ASSERT_FALSE(e1);
    EXPECT_EQ(e1.error().code, errc::unsupported);
    EXPECT_NE(std::string(e1.error().what).find("ABI"), std::string::npos);

    static provider_ops small = posix_copy(r, "small");
    small.size = sizeof(provider_ops) - sizeof(void*);
    auto e2 = r.add(&small);
    ASSERT_FALSE(e2);
    EXPECT_EQ(e2.error().code, errc::invalid_argument);
    EXPECT_NE(std::string(e2.error().what).find("smaller"), std::string::npos);

    static provider_ops unnamed = posix_copy(r, "");
    auto e3 = r.add(&unnamed);
    ASSERT_FALSE(e3);
    EXPECT_EQ(e3.error().code, errc::invalid_argument);
    EXPECT_EQ(r.names().size(), 2U);  // nothing was registered
}

TEST(registry, add_rejects_each_missing_required_op_by_name) {
    registry r;
    struct hole {
        void (*clear)(provider_ops&);
        const char* op;
    };
    const hole holes[] = {
        {[](provider_ops& o) { o.init = nullptr; }, "'init'"},
        {[](provider_ops& o) { o.terminate = nullptr; }, "'terminate'"},
        {[](provider_ops& o) { o.validate = nullptr; }, "'validate'"},
        {[](provider_ops& o) { o.open = nullptr; }, "'open'"},
        {[](provider_ops& o) { o.close = nullptr; }, "'close'"},
        {[](provider_ops& o) { o.stat = nullptr; }, "'stat'"},
        {[](provider_ops& o) { o.read_blocks = nullptr; }, "'read_blocks'"},
        {[](provider_ops& o) { o.finish = nullptr; }, "'finish'"},
        {[](provider_ops& o) { o.unlock_range = nullptr; }, "'unlock_range'"},
        {[](provider_ops& o) { o.unwatch = nullptr; }, "'unwatch'"},
        {[](provider_ops& o) { o.remove = nullptr; }, "'remove'"},
        {[](provider_ops& o) { o.sync = nullptr; }, "'sync'"},
        {[](provider_ops& o) { o.resize = nullptr; }, "'resize'"},
    };
    for (const hole& h : holes) {
        provider_ops ops = posix_copy(r, "holey");
        h.clear(ops);
        auto e = r.add(&ops);
        ASSERT_FALSE(e) << h.op;
        EXPECT_EQ(e.error().code, errc::invalid_argument) << h.op;
        EXPECT_NE(std::string(e.error().what).find(h.op), std::string::npos) << e.error().what;
    }
    EXPECT_EQ(r.find("holey"), nullptr);
}

TEST(registry, add_rejects_async_ops_the_engine_cannot_drive) {
    registry r;
    static provider_ops ops = posix_copy(r, "async_reader");
    ops.async_ops = op_read_blocks;
    auto e = r.add(&ops);
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error().code, errc::unsupported);
}

TEST(registry, add_rejects_a_duplicate_name_and_accepts_a_new_one) {
    registry r;
    static provider_ops dup = posix_copy(r, "posix");
    auto e = r.add(&dup);
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error().code, errc::busy);

    static provider_ops fresh = posix_copy(r, "posix2");
    ASSERT_TRUE(r.add(&fresh));
    EXPECT_EQ(r.find("posix2"), &fresh);
    EXPECT_EQ(r.names().size(), 3U);
    ASSERT_TRUE(r.remove("posix2"));
    EXPECT_EQ(r.find("posix2"), nullptr);
    auto again = r.remove("posix2");
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, errc::not_found);
}

TEST(registry, instantiate_fails_cleanly) {
    registry r;
    temp_dir dir;
    auto none = r.instantiate("nope", {.root = dir.str()});
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().code, errc::not_found);

    auto missing_root = r.instantiate("posix", {.root = dir.file("missing")});
    ASSERT_FALSE(missing_root);
    EXPECT_EQ(missing_root.error().code, errc::not_found);

    test::write_file(dir.file("plain"), test::pattern(10));
    auto file_root = r.instantiate("posix", {.root = dir.file("plain")});
    ASSERT_FALSE(file_root);
    EXPECT_EQ(file_root.error().code, errc::not_regular_file);

    auto empty_root = r.instantiate("posix", {.root = ""});
    ASSERT_FALSE(empty_root);
    EXPECT_EQ(empty_root.error().code, errc::invalid_argument);
    EXPECT_EQ(r.instances("posix"), 0U);  // failed inits leave no count behind
}

TEST(registry, terminate_and_remove_are_busy_while_in_use) {
    registry r;
    temp_dir dir;
    test::write_file(dir.file("f"), test::pattern(100));
    auto inst = std::move(*r.instantiate("posix", {.root = dir.str()}));
    EXPECT_EQ(r.instances("posix"), 1U);

    auto f = inst.open("f");
    ASSERT_TRUE(f) << describe(f.error());
    EXPECT_EQ(inst.open_files(), 1U);

    auto busy = inst.terminate();
    ASSERT_FALSE(busy);
    EXPECT_EQ(busy.error().code, errc::busy);
    EXPECT_FALSE(inst.empty());
    // The instance still works: nothing was torn down.
    auto f2 = inst.open("f");
    ASSERT_TRUE(f2);
    EXPECT_EQ(inst.open_files(), 2U);

    auto rm = r.remove("posix");
    ASSERT_FALSE(rm);
    EXPECT_EQ(rm.error().code, errc::busy);

    { auto drop = std::move(*f); }
    { auto drop = std::move(*f2); }
    EXPECT_EQ(inst.open_files(), 0U);
    ASSERT_TRUE(inst.terminate());
    EXPECT_TRUE(inst.empty());
    EXPECT_EQ(r.instances("posix"), 0U);
    auto twice = inst.terminate();
    ASSERT_FALSE(twice);
    EXPECT_EQ(twice.error().code, errc::closed);
    EXPECT_TRUE(r.remove("posix"));
}

TEST(registry, dropping_the_handle_defers_terminate_to_the_last_file) {
    registry r;
    temp_dir dir;
    test::write_file(dir.file("f"), test::pattern(100));
    std::optional<file> f;
    {
        auto inst = std::move(*r.instantiate("posix", {.root = dir.str()}));
        f.emplace(std::move(*inst.open("f")));
    }
    // The handle is gone but the file keeps its instance alive.
    EXPECT_EQ(r.instances("posix"), 1U);
    auto v = f->lock_range({0, 10}, lock_kind::shared);  // dispatches through the live instance
    EXPECT_TRUE(v);
    f.reset();
    EXPECT_EQ(r.instances("posix"), 0U);
}

TEST(registry, instances_outlive_the_registry) {
    temp_dir dir;
    test::write_file(dir.file("f"), test::pattern(100));
    provider_instance inst;
    {
        registry r;
        inst = std::move(*r.instantiate("direct", {.root = dir.str()}));
    }
    auto info = inst.validate("f");
    ASSERT_TRUE(info);
    EXPECT_EQ(info->size, 100U);
    EXPECT_TRUE(inst.terminate());
}

}  // namespace
}  // namespace datapump::fs
