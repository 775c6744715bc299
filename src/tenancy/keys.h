// New API keys and key ids for `ember keys create`. A key is shown once and only its SHA-256
// is stored (config.h ApiKey); the id names the key in listings, logs and revocation.
#pragma once

#include <string>

namespace ember::tenancy {

// "ek_" + 40 base62 characters from std::random_device (about 238 bits): long enough that
// guessing is hopeless and a fast, unsalted hash is the right way to store it.
std::string NewApiKey();

// "key_" + 12 lower-case hex digits (48 random bits); the store checks uniqueness.
std::string NewKeyId();

}  // namespace ember::tenancy
