#include "datapump/http/proto/range.hpp"

#include "text.hpp"
#include <optional>

namespace datapump::http {

namespace {

using text::trim_ows;

constexpr std::size_t max_digits = 19;  // 10^19 - 1 < 2^64: no overflow check needed

// 1 to 19 ASCII digits, nothing else.
std::optional<std::uint64_t> parse_digits(std::string_view s) {
    if (s.empty() || s.size() > max_digits) {
        return std::nullopt;
    }
    std::uint64_t value = 0;
    for (const char c : s) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        value = value * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return value;
}

bool is_bytes_unit(std::string_view unit) {
    constexpr std::string_view bytes = "bytes";
    if (unit.size() != bytes.size()) {
        return false;
    }
    for (std::size_t i = 0; i < unit.size(); ++i) {
        const char c = (unit[i] >= 'A' && unit[i] <= 'Z') ? static_cast<char>(unit[i] - 'A' + 'a') : unit[i];
        if (c != bytes[i]) {
            return false;
        }
    }
    return true;
}

constexpr range_result full{range_kind::full, 0, 0};
constexpr range_result unsatisfiable{range_kind::unsatisfiable, 0, 0};

range_result evaluate_spec(std::string_view spec, std::uint64_t size) {
    const std::size_t dash = spec.find('-');
    if (dash == std::string_view::npos) {
        return full;
    }
    const std::string_view first_text = spec.substr(0, dash);
    const std::string_view last_text = spec.substr(dash + 1);
    if (first_text.empty()) {  // suffix-range: "-n"
        const auto length = parse_digits(last_text);
        if (!length) {
            return full;
        }
        if (*length == 0 || size == 0) {
            return unsatisfiable;
        }
        const std::uint64_t first = *length >= size ? 0 : size - *length;
        return {range_kind::partial, first, size - 1};
    }
    const auto first = parse_digits(first_text);
    if (!first) {
        return full;
    }
    std::uint64_t last = 0;
    bool open_ended = true;
    if (!last_text.empty()) {
        const auto parsed = parse_digits(last_text);
        if (!parsed) {
            return full;
        }
        if (*parsed < *first) {
            return full;  // invalid int-range: the whole header is ignored
        }
        last = *parsed;
        open_ended = false;
    }
    if (*first >= size) {
        return unsatisfiable;
    }
    if (open_ended || last >= size) {
        last = size - 1;
    }
    return {range_kind::partial, *first, last};
}

}  // namespace

range_result evaluate_range(std::string_view header_value, std::uint64_t size) {
    const std::string_view value = trim_ows(header_value);
    const std::size_t eq = value.find('=');
    if (eq == std::string_view::npos || !is_bytes_unit(value.substr(0, eq))) {
        return full;
    }
    std::string_view set = value.substr(eq + 1);
    std::string_view only;
    std::size_t count = 0;
    while (true) {
        const std::size_t comma = set.find(',');
        const std::string_view element = trim_ows(set.substr(0, comma));
        if (!element.empty()) {
            only = element;
            ++count;
        }
        if (comma == std::string_view::npos) {
            break;
        }
        set.remove_prefix(comma + 1);
    }
    if (count != 1) {
        return full;  // no range at all, or several: served whole
    }
    return evaluate_spec(only, size);
}

range_result evaluate_range(const std::string* header_value, std::uint64_t size) {
    if (header_value == nullptr) {
        return {range_kind::none, 0, 0};
    }
    return evaluate_range(std::string_view(*header_value), size);
}

std::string content_range(std::uint64_t first, std::uint64_t last, std::uint64_t size) {
    std::string out = "bytes ";
    out += std::to_string(first);
    out += '-';
    out += std::to_string(last);
    out += '/';
    out += std::to_string(size);
    return out;
}

std::string content_range_unsatisfied(std::uint64_t size) {
    return "bytes */" + std::to_string(size);
}

}  // namespace datapump::http
