#include "server/app.h"

#include <gtest/gtest.h>

namespace ember::server {
namespace {

http::Request From(bool loopback, std::string authorization = "") {
  http::Request r;
  r.method = "POST";
  r.path = r.target = "/admin/models/a/load";
  r.from_loopback = loopback;
  if (!authorization.empty()) r.headers.emplace_back("Authorization", authorization);
  return r;
}

TEST(CheckAdminAccess, WithoutAKeyOnlyLoopbackClients) {
  EXPECT_TRUE(CheckAdminAccess(From(true), "").has_value());
  Status remote = CheckAdminAccess(From(false), "");
  ASSERT_FALSE(remote.has_value());
  EXPECT_EQ(remote.error().code, ErrorCode::kPermissionDenied);
  EXPECT_NE(remote.error().message.find("--admin-key"), std::string::npos);
}

TEST(CheckAdminAccess, WithAKeyTheBearerTokenFromAnywhere) {
  EXPECT_TRUE(CheckAdminAccess(From(false, "Bearer s3cret"), "s3cret").has_value());
  EXPECT_TRUE(CheckAdminAccess(From(true, "Bearer s3cret"), "s3cret").has_value());
  for (const char* wrong :
       {"", "Bearer s3cre", "Bearer s3cret ", "bearer s3cret", "s3cret", "Bearer S3CRET"}) {
    Status s = CheckAdminAccess(From(true, wrong), "s3cret");  // loopback is not enough
    ASSERT_FALSE(s.has_value()) << wrong;
    EXPECT_EQ(s.error().code, ErrorCode::kUnauthenticated) << wrong;
  }
}

}  // namespace
}  // namespace ember::server
