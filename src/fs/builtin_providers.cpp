#include "builtin_providers.hpp"

#include <array>

namespace datapump::fs {

std::span<const provider_ops* const> builtin_providers() {
    static constexpr std::array<const provider_ops*, 2> list{&posix_provider, &direct_provider};
    return list;
}

}  // namespace datapump::fs
