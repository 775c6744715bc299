// The subset of TOML that ember's files (tenants.toml, prices.toml) use, read by ember's own code:
// comments, [tables],
// [[arrays of tables]], dotted and quoted keys, and values that are basic or literal strings,
// integers, floats and booleans. Arrays, inline tables, multi-line strings and dates are
// refused with the line and what to write instead. toml11 was used first and fuzzing found a
// heap-buffer-overflow in its lexer within seconds (fuzz/tenants_fuzz.cc); this reader has no
// recursion, no exceptions, and is fuzzed with the rest of the store.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.h"
#include "common/money.h"

namespace ember::toml {

enum class Kind { kTable, kArray, kString, kInteger, kFloat, kBoolean };

struct Node {
  Kind kind = Kind::kTable;
  int line = 0;  // where it was defined (1-based)
  std::string string;
  std::int64_t integer = 0;
  double floating = 0;
  std::string number_text;  // an integer or float as written, '_' removed (exact decimals)
  bool boolean = false;
  std::vector<std::pair<std::string, std::unique_ptr<Node>>> table;  // in file order
  std::vector<std::unique_ptr<Node>> array;                          // of tables
  bool explicit_table = false;  // defined by a [header] or a key (not only named in a path)

  Node* Find(std::string_view key) const;
  bool is_table() const { return kind == Kind::kTable; }
  bool is_array() const { return kind == Kind::kArray; }
  bool is_string() const { return kind == Kind::kString; }
  bool is_integer() const { return kind == Kind::kInteger; }
  bool is_floating() const { return kind == Kind::kFloat; }
  bool is_boolean() const { return kind == Kind::kBoolean; }
};

// The document's root table, or kInvalidArgument "FILE:LINE: reason". The text is checked first:
// at most 16 MiB, nesting of at most 32 levels and at most 32 dotted parts per line (the tree is
// freed recursively), so a hostile file gets an error, never a crash or a hang.
Result<std::unique_ptr<Node>> Read(std::string_view text, std::string_view file_name);

// For the schema checks over a document (tenants.toml, prices.toml, instances.toml), each error
// kInvalidArgument "FILE:LINE: reason" with the line of the offending node.
// "a boolean", "an integer", "a float", "a string", "an array of tables", "a table".
std::string_view KindName(const Node& node);
std::unexpected<Error> ErrorAt(std::string_view file, const Node& at, std::string_view why);
// OK when `key` is one of `allowed`; else "unknown key "K" WHERE (allowed: a, b, ...)".
Status CheckKey(std::string_view file, const std::string& key, const Node& value,
                std::string_view where, std::span<const std::string_view> allowed);
// A number of dollars as written (integer or decimal), read exactly from its text into integer
// micro-dollars (common/money.h), never through a double; `what` names it in errors.
Result<Microdollars> Dollars(std::string_view file, const Node& value, std::string_view what);

}  // namespace ember::toml
