#include "datapump/http/proto/request.hpp"

namespace datapump::http {

const std::string* request::header(std::string_view lowercase_name) const {
    for (const auto& [name, value] : headers) {
        if (name == lowercase_name) {
            return &value;
        }
    }
    return nullptr;
}

}  // namespace datapump::http
