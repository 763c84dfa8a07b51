// File: datapump/base/expected.hpp
//
// std::expected for every compiler the project supports. libstdc++ 12 hides <expected> unless
// __cpp_concepts >= 202002L; clang before 19 reports 201907L although it implements what that
// header needs (P0848, conditionally trivial special members: clang 16 compiles it correctly).
// So, for clang on libstdc++ only, raise the macro just for this include. Include this header,
// never <expected> directly: an earlier plain include would leave std::expected undefined (a
// loud compile error, never a silent one).
#pragma once

// <version> defines __GLIBCXX__, which the test below needs even when this is the first include.
#include <version>

#if defined(__clang__) && defined(__GLIBCXX__) && __cpp_concepts < 202002L
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wmacro-redefined"
#pragma clang diagnostic ignored "-Wbuiltin-macro-redefined"
#pragma clang diagnostic ignored "-Wreserved-macro-identifier"
#undef __cpp_concepts
#define __cpp_concepts 202002L  // NOLINT(bugprone-reserved-identifier): see above
#include <expected>
#pragma clang diagnostic pop
#else
#include <expected>
#endif
