// GET /api/v1/openapi.json: the OpenAPI 3 description of what the admin
// server answers. tests/integration/test_admin.py walks it and calls every
// operation, so it cannot drift from the routes in admin_api.cpp.
#pragma once

#include <string>

namespace sluice::admin {

std::string openapi_document(const std::string& version);

}  // namespace sluice::admin
