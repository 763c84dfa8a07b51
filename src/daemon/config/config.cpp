// The TOML file and the flags, read by the option table (options.hpp); --help, the template and
// the docs' flag table, written from it. CLI11 and toml++ throw; every exception is caught in this
// file and becomes a message in parse_outcome.
#include "config/config.hpp"

#include "config/options.hpp"

#include <CLI/CLI.hpp>
#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <exception>
#include <filesystem>
#include <limits>
#include <memory>
#include <sstream>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#ifndef DATAPUMP_VERSION
#define DATAPUMP_VERSION "unknown"
#endif

namespace datapump::daemon {

namespace {

using detail::find_option;
using detail::flag_name;
using detail::mode_spec;
using detail::option_spec;
using detail::option_table;
using detail::problem;
using detail::raw_value;

constexpr int exit_usage = 2;

// Levenshtein distance, for "did you mean" on unknown keys (keys are short).
std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) {
        row[j] = j;
    }
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0U : 1U)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

// "FILE:LINE:COLUMN" of a place in the TOML file, as compilers and editors write it.
std::string file_position(const std::string& path, const toml::source_position& at) {
    return path + ":" + std::to_string(at.line) + ":" + std::to_string(at.column);
}

std::string unknown_key(std::string_view key, const std::string& where) {
    std::string message = where + ": unknown key '" + std::string(key) + "'";
    const option_spec* best = nullptr;
    std::size_t best_distance = 3;  // suggest only close spellings
    for (const auto& o : option_table()) {
        const std::size_t d = edit_distance(key, o.key);
        if (d < best_distance) {
            best = &o;
            best_distance = d;
        }
    }
    if (best != nullptr) {
        return message + ": did you mean '" + std::string(best->key) + "'?";
    }
    message += " (known keys:";
    for (const auto& o : option_table()) {
        message += " ";
        message += o.key;
    }
    return message + ")";
}

raw_value from_toml(const toml::node& node, std::string origin) {
    raw_value v;
    v.origin = std::move(origin);
    switch (node.type()) {
        case toml::node_type::string:
            v.value = std::string(node.as_string()->get());
            v.type_name = "a string";
            break;
        case toml::node_type::integer:
            v.value = node.as_integer()->get();
            v.type_name = "an integer";
            break;
        case toml::node_type::floating_point:
            v.value = node.as_floating_point()->get();
            v.type_name = "a float";
            break;
        case toml::node_type::boolean:
            v.value = node.as_boolean()->get();
            v.type_name = "a boolean";
            break;
        case toml::node_type::table: v.type_name = "a table"; break;
        case toml::node_type::array:
            v.type_name = "an array";
            for (const auto& element : *node.as_array()) {
                if (!element.is_string()) {
                    v.texts.clear();
                    break;
                }
                v.texts.emplace_back(element.as_string()->get());
            }
            break;
        case toml::node_type::date: v.type_name = "a date"; break;
        case toml::node_type::time: v.type_name = "a time"; break;
        case toml::node_type::date_time: v.type_name = "a date-time"; break;
        case toml::node_type::none: v.type_name = "nothing"; break;
    }
    return v;
}

// Where each key of the file is, "FILE:LINE:COLUMN" of its value (conf: for validation's
// messages about a key the file set).
using key_places = std::vector<std::pair<std::string, std::string>>;

// Reads `path` and applies its keys to `config`. Returns one message per problem.
std::vector<std::string> apply_toml(daemon_config& config, const std::string& path, key_places& places) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
        return {"--config: cannot read '" + path + "': " +
                (ec ? ec.message() : std::string("no such file (give the path of a TOML file)"))};
    }
    toml::table table;
    try {
        table = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
        const auto& at = e.source().begin;
        return {file_position(path, at) + ": not valid TOML: " + std::string(e.description())};
    }
    // The table iterates by key: the problems are told in the file's order, by their place.
    std::vector<std::pair<toml::source_position, std::string>> found;
    for (const auto& [key, node] : table) {
        const option_spec* spec = find_option(key.str());
        if (spec == nullptr) {
            found.emplace_back(key.source().begin, unknown_key(key.str(), file_position(path, key.source().begin)));
            continue;
        }
        // The value's place: a type or range error points at what is to be changed.
        places.emplace_back(std::string(key.str()), file_position(path, node.source().begin));
        raw_value v = from_toml(node, file_position(path, node.source().begin) + ": key '" + std::string(key.str()) + "'");
        v.place = file_position(path, node.source().begin);
        if (auto p = spec->apply(config, v)) {
            found.emplace_back(node.source().begin, std::move(*p));
        }
    }
    std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
        return a.first.line != b.first.line ? a.first.line < b.first.line : a.first.column < b.first.column;
    });
    std::vector<std::string> problems;
    problems.reserve(found.size());
    for (auto& [at, message] : found) {
        problems.push_back(std::move(message));
    }
    config.config_file = path;
    return problems;
}

// conf: --print-config-template. The TOML literal of an option's value, from its --help form
// and its value name (the table has no type column): switches are booleans; N, BYTES and RATE
// integers; X a number; a TOKEN's "none" the empty string; anything else a string.
std::string toml_literal(const option_spec& o, const daemon_config& c) {
    std::string shown = o.show(c);
    if (o.value_name.empty() || o.value_name == "on/off") {
        return shown == "on" ? "true" : "false";
    }
    if (o.value_name == "N" || o.value_name == "BYTES" || o.value_name == "RATE" || o.value_name == "X") {
        return shown;
    }
    if (o.value_name == "TOKEN" && shown == "none") {
        return "\"\"";
    }
    std::ostringstream out;
    out << toml::value<std::string>(shown);  // quoted and escaped as TOML wants
    return out.str();
}

// The flags as CLI11 sees them: one text per option, applied only when given. CLI11 keeps references
// into these, so they are sized once, before build_app binds them.
struct flag_state {
    std::vector<std::string> text = std::vector<std::string>(option_table().size());
    std::unique_ptr<bool[]> switches = std::make_unique<bool[]>(option_table().size());  // flags without a value
    std::string config_file;
    std::vector<CLI::Option*> given = std::vector<CLI::Option*>(option_table().size());
    CLI::Option* config = nullptr;
    std::vector<std::string> listen;  // --listen may be given several times
    // conf: modes that do not run the daemon
    bool check = false;           // --check-config
    bool print_template = false;  // --print-config-template
};

// The help of a mode flag, from the table.
std::string mode_help(std::string_view flag) {
    for (const mode_spec& m : detail::mode_table()) {
        if (m.flag == flag) {
            return std::string(m.help);
        }
    }
    return {};
}

std::unique_ptr<CLI::App> build_app(flag_state& flags) {
    auto app = std::make_unique<CLI::App>(
        "datapumpd: serves the files under one folder over HTTP/1.1, paced, with VCR control", "datapumpd");
    app->set_version_flag("--version", std::string("datapumpd ") + DATAPUMP_VERSION);
    flags.config = app->add_option("--config", flags.config_file,
                                   "TOML file with the same keys as the flags (send_path, cache_mib, ...); "
                                   "flags given override it")
                       ->type_name("FILE");
    // conf: modes that do not run the daemon
    app->add_flag("--check-config", flags.check, mode_help("--check-config"));
    app->add_flag("--print-config-template", flags.print_template, mode_help("--print-config-template"));
    const daemon_config defaults;
    const auto options = option_table();
    for (std::size_t i = 0; i < options.size(); ++i) {
        const option_spec& o = options[i];
        const std::string help = std::string(o.help) + " [default: " + o.show(defaults) + "]";
        if (o.value_name.empty()) {
            flags.given[i] = app->add_flag(flag_name(o.key), flags.switches[i], help);
        } else if (o.key == "listen") {
            // One value per --listen (never the next word), every occurrence kept.
            flags.given[i] = app->add_option(flag_name(o.key), flags.listen, help)
                                 ->type_name(std::string(o.value_name))
                                 ->expected(1)
                                 ->allow_extra_args(false)
                                 ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
        } else {
            flags.given[i] = app->add_option(flag_name(o.key), flags.text[i], help)->type_name(std::string(o.value_name));
        }
    }
    app->footer(
        "RATE is bytes per second with an optional SI suffix k (x1000), M (x10^6) or G (x10^9): 5M is 5 MB/s.\n"
        "Order: defaults, then the --config file, then the flags given. See docs/daemon.md.");
    return app;
}

// conf: validate_config's lines start "--flag (key): "; one about a key the file set (and no flag
// overrode) gets the key's FILE:LINE:COLUMN in front.
std::string place_problems(const std::string& lines, const key_places& places) {
    std::string out;
    std::size_t start = 0;
    while (start <= lines.size()) {
        std::size_t end = lines.find('\n', start);
        if (end == std::string::npos) {
            end = lines.size();
        }
        const std::string line = lines.substr(start, end - start);
        const std::size_t open = line.find(" (");
        const std::size_t close = line.find("): ");
        std::string prefix;
        if (line.starts_with("--") && open != std::string::npos && close != std::string::npos && open < close) {
            const std::string key = line.substr(open + 2, close - open - 2);
            for (const auto& [k, at] : places) {
                if (k == key) {
                    prefix = at + ": ";
                }
            }
        }
        if (!out.empty()) {
            out += '\n';
        }
        out += prefix;
        out += line;
        start = end + 1;
    }
    return out;
}

std::string join_lines(const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& line : lines) {
        if (!out.empty()) {
            out += '\n';
        }
        out += line;
    }
    return out;
}

parse_outcome stop(int exit_code, std::string message) {
    return parse_outcome{std::nullopt, exit_code, std::move(message)};
}

parse_outcome usage_error(std::string_view message) {
    return stop(exit_usage, "datapumpd: " + std::string(message) + "\nRun 'datapumpd --help' for the options.");
}

parse_outcome parse_or_throw(int argc, const char* const* argv) {
    // docs/daemon.md's table, for whoever edits the docs: a mode kept out of --help, and out of
    // CLI11 (whose hidden group would add an empty line to --help).
    for (int i = 1; i < argc; ++i) {
        if (std::string_view(argv[i]) == "--print-flag-table") {
            return stop(0, flag_table());
        }
    }
    flag_state flags;
    const auto app = build_app(flags);
    try {
        app->parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        return stop(0, app->help());
    } catch (const CLI::CallForAllHelp&) {
        return stop(0, app->help());
    } catch (const CLI::CallForVersion& e) {
        return stop(0, e.what());
    } catch (const CLI::ParseError& e) {
        return usage_error(e.what());
    }

    if (flags.print_template) {
        return stop(0, config_template());
    }

    daemon_config config;
    std::vector<std::string> problems;
    key_places places;
    if (flags.config->count() > 0) {
        problems = apply_toml(config, flags.config_file, places);
    }
    const auto options = option_table();
    for (std::size_t i = 0; i < options.size(); ++i) {
        if (flags.given[i]->count() == 0) {
            continue;
        }
        std::erase_if(places, [&](const auto& p) { return p.first == options[i].key; });  // the flag's value wins
        raw_value v;
        v.origin = flag_name(options[i].key);
        v.from_flag = true;
        v.value = options[i].value_name.empty() ? std::string(flags.switches[i] ? "on" : "off") : flags.text[i];
        if (options[i].key == "listen") {
            v.texts = flags.listen;
        }
        if (auto p = options[i].apply(config, v)) {
            problems.push_back(std::move(*p));
        }
    }
    if (problems.empty()) {
        if (std::string invalid = validate_config(config); !invalid.empty()) {
            problems.push_back(place_problems(invalid, places));
        }
    }
    if (!problems.empty()) {
        if (flags.check) {
            return stop(exit_usage, "datapumpd: " + join_lines(problems) + "\ndatapumpd: configuration refused\n");
        }
        return usage_error(join_lines(problems));
    }
    if (flags.check) {
        std::string ok = "datapumpd: configuration ok";
        if (!config.config_file.empty()) {
            ok += " (" + config.config_file + ")";
        }
        ok += "\n";
        if (const std::string warning = exposure_warning(config); !warning.empty()) {
            ok += "datapumpd: warning: " + warning + "\n";
        }
        return stop(0, ok);
    }
    return parse_outcome{std::move(config), 0, {}};
}

}  // namespace

parse_outcome parse_config(int argc, const char* const* argv) {
    try {
        return parse_or_throw(argc, argv);
    } catch (const std::exception& e) {
        // CLI11 set-up, toml++ or an allocation: still a clean exit with a message.
        return usage_error(std::string("cannot read the configuration: ") + e.what());
    }
}

std::string usage_text() {
    flag_state flags;
    return build_app(flags)->help();
}

// conf: the template and the table's keys, for reload.
std::string config_template() {
    const daemon_config defaults;
    std::string out =
        "# datapumpd configuration (TOML), read with `datapumpd --config FILE`.\n"
        "# Every key is commented out with its default: uncomment a line to change it. Flags given on the\n"
        "# command line override this file. Check it with `datapumpd --config FILE --check-config`;\n"
        "# `systemctl reload datapumpd` (SIGHUP) applies it to new requests (docs/daemon.md, \"Reload\").\n"
        "# Generated by `datapumpd --print-config-template` (datapumpd " DATAPUMP_VERSION
        ") from the table behind --help.\n";
    for (const option_spec& o : option_table()) {
        out += "\n# ";
        out += o.help;
        if (o.key == "loops") {
            out += "; default: one per CPU (" + o.show(defaults) + " where this was generated)";
        }
        out += "\n#";
        out += o.key;
        out += " = ";
        out += toml_literal(o, defaults);
        out += "\n";
    }
    return out;
}

std::string flag_table() {
    std::string out = "| flag | TOML key | default | meaning |\n|---|---|---|---|\n";
    for (const option_spec& o : option_table()) {
        out += "| `" + flag_name(o.key);
        if (!o.value_name.empty()) {
            out += " ";
            out += o.value_name;
        }
        out += "` | `";
        out += o.key;
        out += "` | ";
        out += o.doc_default;
        out += " | ";
        out += o.doc;
        out += " |\n";
    }
    for (const mode_spec& m : detail::mode_table()) {
        out += "| `";
        out += m.flag;
        out += "` | — | — | ";
        out += m.doc;
        out += " |\n";
    }
    return out;
}

std::vector<std::string_view> option_keys() {
    std::vector<std::string_view> keys;
    keys.reserve(option_table().size());
    for (const option_spec& o : option_table()) {
        keys.push_back(o.key);
    }
    return keys;
}

std::string show_option(const daemon_config& config, std::string_view key) {
    const option_spec* spec = find_option(key);
    return spec == nullptr ? std::string() : spec->show(config);
}

}  // namespace datapump::daemon
