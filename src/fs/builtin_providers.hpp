// File: src/fs/builtin_providers.hpp
//
// The one explicit list of providers compiled into the engine (no static-constructor
// registration whose order depends on the linker). Each table lives in its provider's folder.
#pragma once

#include "datapump/fs/provider.hpp"

#include <span>

namespace datapump::fs {

extern const provider_ops posix_provider;   // src/fs/posix/
extern const provider_ops direct_provider;  // src/fs/direct/

// The tables the registry registers at construction, in this order.
[[nodiscard]] std::span<const provider_ops* const> builtin_providers();

}  // namespace datapump::fs
