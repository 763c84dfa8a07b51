// File: datapump/base/export.hpp
//
// What libdatapump.so exports. The library is compiled with -fvisibility=hidden: a symbol is
// visible to programs only when it is declared between DATAPUMP_API_BEGIN and DATAPUMP_API_END
// (every installed header wraps its declarations in them, after its own #includes) or marked
// DATAPUMP_API one by one. What the headers under src/ and */internal/ declare, and the
// third-party code the library uses (spdlog, fmt, http-parser, liburing, ...), stays inside it.
// A public header that names a private type declares it outside the region (a detail:: state
// it points to: END ... forward declarations ... BEGIN) or, nested in a class (a pimpl's
// `struct impl;`), DATAPUMP_INTERNAL; else its members would be exported with the header. (Not
// DATAPUMP_INTERNAL at namespace scope: a source that defines the type before including the
// header would see the attribute on a redeclaration, which GCC ignores with a warning.)
//
// The same objects make the static part libraries the in-tree programs link: there the marks
// change nothing. (ELF only: the project builds on Linux.)
#pragma once

#define DATAPUMP_API __attribute__((visibility("default")))
#define DATAPUMP_API_BEGIN _Pragma("GCC visibility push(default)")
#define DATAPUMP_API_END _Pragma("GCC visibility pop")
#define DATAPUMP_INTERNAL __attribute__((visibility("hidden")))
