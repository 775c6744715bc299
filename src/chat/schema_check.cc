#include "chat/schema_check.h"

#include <json-schema-to-grammar.h>

#include <array>
#include <exception>
#include <set>
#include <vector>

#include "chat/chat.h"

namespace ember::chat {
namespace {

// Keywords that change nothing about which values are valid.
const std::set<std::string, std::less<>> kAnnotations = {
    "title", "description", "default",  "examples",  "$comment", "$schema",
    "$id",   "deprecated",  "readOnly", "writeOnly", "$defs",    "definitions"};

// What common's converter (json-schema.cpp) reads, by the kind of value each keyword is about.
enum Kind { kObject, kArray, kString, kNumeric, kAnyKind };
struct Keyword {
  std::string_view name;
  Kind kind;
};
constexpr std::array kEnforced = {
    Keyword{"type", kAnyKind},
    Keyword{"enum", kAnyKind},
    Keyword{"const", kAnyKind},
    Keyword{"$ref", kAnyKind},
    Keyword{"anyOf", kAnyKind},
    Keyword{"oneOf", kAnyKind},
    Keyword{"properties", kObject},
    Keyword{"required", kObject},
    Keyword{"additionalProperties", kObject},
    Keyword{"items", kArray},
    Keyword{"prefixItems", kArray},
    Keyword{"minItems", kArray},
    Keyword{"maxItems", kArray},
    Keyword{"pattern", kString},
    Keyword{"minLength", kString},
    Keyword{"maxLength", kString},
    Keyword{"format", kString},
    Keyword{"minimum", kNumeric},
    Keyword{"maximum", kNumeric},
    Keyword{"exclusiveMinimum", kNumeric},
    Keyword{"exclusiveMaximum", kNumeric},
};
const std::set<std::string, std::less<>> kFormats = {"date",  "time",  "date-time", "uuid", "uuid1",
                                                     "uuid2", "uuid3", "uuid4",     "uuid5"};

const Keyword* Find(std::string_view name) {
  for (const Keyword& k : kEnforced)
    if (k.name == name) return &k;
  return nullptr;
}

std::unexpected<Error> Refuse(const std::string& keyword, const std::string& path,
                              const std::string& why) {
  return InvalidArgument("JSON schema keyword '" + keyword + "' at " + path +
                         " cannot be enforced: " + why);
}

// The JSON types a node can produce in the converter's grammar: the "type" keyword's, else the
// one the converter picks from the structural keywords (json-schema.cpp, build_node).
struct Types {
  bool object = false, array = false, string = false, integer = false, number = false;
};

Types TypesOf(const common_json& s) {
  Types t;
  std::vector<std::string> names;
  if (s.contains("type") && s.at("type").is_string()) {
    names.push_back(s.at("type").get<std::string>());
  } else if (s.contains("type") && s.at("type").is_array()) {
    for (const auto& n : s.at("type"))
      if (n.is_string()) names.push_back(n.get<std::string>());
  } else if (s.contains("properties") || s.contains("additionalProperties")) {
    names = {"object"};
  } else if (s.contains("items") || s.contains("prefixItems")) {
    names = {"array"};
  } else if (s.contains("pattern") || s.contains("minLength") || s.contains("maxLength") ||
             s.contains("format")) {
    names = {"string"};
  } else {
    names = {"object", "array", "string", "number"};
  }
  for (const std::string& n : names) {
    t.object |= n == "object";
    t.array |= n == "array";
    t.string |= n == "string";
    t.integer |= n == "integer";
    t.number |= n == "number";
  }
  return t;
}

// A supported pattern converts to a rule of its own; one the converter cannot translate
// becomes "any string" (with only a warning on stderr).
bool PatternIsTranslated(const std::string& pattern) {
  try {
    common_json probe = common_json::object();
    probe["type"] = "string";
    probe["pattern"] = pattern;
    std::string grammar = json_schema_to_grammar(probe, true);
    return grammar.find("root ::= string\n") == std::string::npos;
  } catch (const std::exception&) {
    return false;
  }
}

class Checker {
 public:
  Result<void> Node(const common_json& s, const std::string& path, int depth) {
    if (depth > kMaxSchemaDepth) {
      return InvalidArgument("JSON schema nests deeper than " + std::to_string(kMaxSchemaDepth) +
                             " levels at " + path);
    }
    if (!s.is_object()) return {};  // the converter itself refuses a non-object schema
    bool has_ref = s.contains("$ref");
    bool has_union = s.contains("anyOf") || s.contains("oneOf");
    bool has_value = s.contains("enum") || s.contains("const");
    Types types = TypesOf(s);
    for (const auto& [key, value] : s.items()) {
      if (kAnnotations.contains(key)) continue;
      const Keyword* k = Find(key);
      if (k == nullptr) return Refuse(key, path, "the grammar converter does not support it");
      if ((has_ref && key != "$ref") || (has_union && key != "anyOf" && key != "oneOf")) {
        return Refuse(key, path,
                      std::string("it is ignored beside '") + (has_ref ? "$ref" : "anyOf/oneOf") +
                          "' (move it into the referenced schema or each alternative)");
      }
      if (has_ref && has_union) return Refuse("$ref", path, "it is ignored beside 'anyOf'");
      if (s.contains("anyOf") && s.contains("oneOf"))
        return Refuse("oneOf", path, "it is ignored beside 'anyOf'");
      if (has_value && key != "type" && key != "enum" && key != "const") {
        return Refuse(key, path, "it is ignored beside 'enum'/'const'");
      }
      if (auto r = CheckKeyword(s, key, k->kind, types, path); !r) return r;
    }
    return Children(s, path, depth);
  }

 private:
  Result<void> CheckKeyword(const common_json& s, const std::string& key, Kind kind, Types types,
                            const std::string& path) {
    if (kind == kNumeric) {
      if (types.number) return Refuse(key, path, "only integer bounds are enforced, not number");
      if ((key == "exclusiveMinimum" && s.contains("minimum")) ||
          (key == "exclusiveMaximum" && s.contains("maximum")))
        return Refuse(key, path, "it is ignored beside minimum/maximum");
    }
    if (kind == kString && types.string) {
      if (key == "format") {
        const common_json& f = s.at("format");
        std::string name = f.is_string() ? f.get<std::string>() : "";
        if (!kFormats.contains(name))
          return Refuse("format", path, "format '" + name + "' is not supported");
        if (s.contains("pattern")) return Refuse("format", path, "it is ignored beside 'pattern'");
      }
      if ((key == "minLength" || key == "maxLength") &&
          (s.contains("pattern") || s.contains("format")))
        return Refuse(key, path, "it is ignored beside 'pattern'/'format'");
      if (key == "pattern") {
        const common_json& p = s.at("pattern");
        if (p.is_string() && !PatternIsTranslated(p.get<std::string>()))
          return Refuse("pattern", path,
                        "the pattern must be anchored with ^ and $ and use only the regex "
                        "syntax the grammar converter translates");
      }
    }
    if (kind == kArray && types.array) {
      bool tuple = (s.contains("items") && s.at("items").is_array()) ||
                   (!s.contains("items") && s.contains("prefixItems"));
      if (key == "prefixItems" && s.contains("items"))
        return Refuse(key, path, "it is ignored beside 'items'");
      if ((key == "minItems" || key == "maxItems") && tuple)
        return Refuse(key, path, "it is ignored for a tuple (items as a list)");
    }
    if (kind == kObject && types.object && key == "required") {
      const common_json& req = s.at("required");
      if (!req.is_array()) return Refuse(key, path, "it must be an array of property names");
      for (const auto& name : req) {
        bool listed = name.is_string() && s.contains("properties") &&
                      s.at("properties").is_object() &&
                      s.at("properties").contains(name.get<std::string>());
        if (!listed)
          return Refuse(key, path,
                        "required property " + name.dump() + " is not listed in 'properties'");
      }
    }
    return {};
  }

  Result<void> Children(const common_json& s, const std::string& path, int depth) {
    for (const char* key : {"properties", "$defs", "definitions"}) {
      if (!s.contains(key) || !s.at(key).is_object()) continue;
      for (const auto& [name, child] : s.at(key).items()) {
        if (auto r = Node(child, path + "/" + key + "/" + name, depth + 1); !r) return r;
      }
    }
    for (const char* key : {"additionalProperties", "items"}) {
      if (s.contains(key) && s.at(key).is_object()) {
        if (auto r = Node(s.at(key), path + "/" + key, depth + 1); !r) return r;
      }
    }
    for (const char* key : {"anyOf", "oneOf", "prefixItems", "items"}) {
      if (!s.contains(key) || !s.at(key).is_array()) continue;
      std::size_t i = 0;
      for (const auto& child : s.at(key)) {
        if (auto r = Node(child, path + "/" + key + "/" + std::to_string(i++), depth + 1); !r)
          return r;
      }
    }
    return {};
  }
};

// Nesting of the JSON text itself, before a recursive parser sees it.
bool NestsDeeperThan(std::string_view text, int limit) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > limit) return true;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return false;
}

}  // namespace

Result<common_json> ParseEnforceableSchema(std::string_view text) {
  if (text.size() > kMaxSchemaBytes) {
    return InvalidArgument("JSON schema is larger than " + std::to_string(kMaxSchemaBytes) +
                           " bytes");
  }
  // A schema level is at most two JSON levels ("properties": {"name": {...}}).
  if (NestsDeeperThan(text, 2 * kMaxSchemaDepth + 2)) {
    return InvalidArgument("JSON schema nests deeper than " + std::to_string(kMaxSchemaDepth) +
                           " levels");
  }
  common_json schema = common_json::parse_no_throw(std::string(text));
  if (schema.is_discarded()) return InvalidArgument("JSON schema is not valid JSON");
  if (!schema.is_object()) return InvalidArgument("JSON schema must be an object");
  try {
    if (auto r = Checker().Node(schema, "#", 0); !r) return std::unexpected(r.error());
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("JSON schema cannot be read: ") + e.what());
  }
  return schema;
}

}  // namespace ember::chat
