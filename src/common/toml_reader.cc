#include "common/toml_reader.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <optional>

#include "common/log.h"

namespace ember::toml {

Node* Node::Find(std::string_view key) const {
  for (const auto& [k, v] : table)
    if (k == key) return v.get();
  return nullptr;
}

namespace {

bool IsBare(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

void AppendUtf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

class Reader {
 public:
  Reader(std::string_view text, std::string_view file) : text_(text), file_(file) {}

  Result<std::unique_ptr<Node>> Run() {
    auto root = std::make_unique<Node>();
    root->explicit_table = true;
    root->line = 1;
    Node* current = root.get();
    while (pos_ < text_.size()) {
      SkipSpace();
      if (AtLineEnd()) {
        if (!EndLine()) return Fail("expected the end of the line");
        continue;
      }
      if (Peek() == '[') {
        auto table = Header(*root);
        if (!table) return std::unexpected(table.error());
        current = *table;
      } else {
        if (Status kv = KeyValue(*current); !kv) return std::unexpected(kv.error());
      }
      SkipSpace();
      if (!EndLine()) return Fail("expected the end of the line after the value");
    }
    return root;
  }

 private:
  char Peek(std::size_t ahead = 0) const {
    return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0';
  }
  bool AtEnd() const { return pos_ >= text_.size(); }
  void SkipSpace() {
    while (!AtEnd() && (Peek() == ' ' || Peek() == '\t')) ++pos_;
  }
  bool AtLineEnd() const {
    const char c = Peek();
    return AtEnd() || c == '\n' || c == '#' || (c == '\r' && Peek(1) == '\n');
  }
  // Consumes an optional comment and the line break (or the end of the text).
  bool EndLine() {
    if (Peek() == '#') {
      while (!AtEnd() && Peek() != '\n') {
        const auto c = static_cast<unsigned char>(Peek());
        if (c < 0x20 && c != '\t' && !(c == '\r' && Peek(1) == '\n')) return false;
        ++pos_;
      }
    }
    if (Peek() == '\r' && Peek(1) == '\n') ++pos_;
    if (AtEnd()) return true;
    if (Peek() != '\n') return false;
    ++pos_;
    ++line_;
    return true;
  }
  std::unexpected<Error> Fail(std::string_view why) const {
    return InvalidArgument(StrCat(file_, ":", line_, ": ", why));
  }

  // A basic ("...") or literal ('...') single-line string starting at pos_.
  Result<std::string> QuotedString() {
    const char quote = Peek();
    if (Peek(1) == quote && Peek(2) == quote) {
      return Fail(
          "multi-line strings are not used in ember's TOML files; write \"...\" on one line");
    }
    ++pos_;
    std::string out;
    while (true) {
      if (AtEnd() || Peek() == '\n') return Fail("a string is not closed on its line");
      const char c = Peek();
      if (c == quote) {
        ++pos_;
        return out;
      }
      const auto u = static_cast<unsigned char>(c);
      if ((u < 0x20 && c != '\t') || u == 0x7f) {
        return Fail("control characters must be escaped in a string");
      }
      if (c != '\\' || quote == '\'') {
        out += c;
        ++pos_;
        continue;
      }
      ++pos_;
      const char e = Peek();
      ++pos_;
      switch (e) {
        case 'b':
          out += '\b';
          break;
        case 't':
          out += '\t';
          break;
        case 'n':
          out += '\n';
          break;
        case 'f':
          out += '\f';
          break;
        case 'r':
          out += '\r';
          break;
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case 'u':
        case 'U': {
          const int digits = e == 'u' ? 4 : 8;
          std::uint32_t cp = 0;
          for (int i = 0; i < digits; ++i) {
            const char h = Peek();
            int v = h >= '0' && h <= '9'   ? h - '0'
                    : h >= 'a' && h <= 'f' ? h - 'a' + 10
                    : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                           : -1;
            if (v < 0) return Fail("a \\u escape needs hexadecimal digits");
            cp = cp * 16 + static_cast<std::uint32_t>(v);
            ++pos_;
          }
          if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return Fail("a \\u escape names no Unicode scalar value");
          }
          AppendUtf8(out, cp);
          break;
        }
        default:
          return Fail("unknown escape in a string");
      }
    }
  }

  // key or key.key.key (bare or quoted parts).
  Result<std::vector<std::string>> Key() {
    std::vector<std::string> parts;
    while (true) {
      SkipSpace();
      const char c = Peek();
      if (c == '"' || c == '\'') {
        auto s = QuotedString();
        if (!s) return std::unexpected(s.error());
        parts.push_back(*std::move(s));
      } else if (IsBare(c)) {
        const std::size_t start = pos_;
        while (!AtEnd() && IsBare(Peek())) ++pos_;
        parts.emplace_back(text_.substr(start, pos_ - start));
      } else {
        return Fail("expected a key");
      }
      SkipSpace();
      if (Peek() != '.') return parts;
      ++pos_;
    }
  }

  // The child table `key` of `parent`, created when missing; the last table of an array of
  // tables. nullptr (with `error` set) when `key` holds a value.
  Node* ChildTable(Node& parent, const std::string& key, std::optional<Error>& error) {
    Node* child = parent.Find(key);
    if (child == nullptr) {
      auto made = std::make_unique<Node>();
      made->line = line_;
      child = made.get();
      parent.table.emplace_back(key, std::move(made));
      return child;
    }
    if (child->kind == Kind::kArray && !child->array.empty()) return child->array.back().get();
    if (child->kind == Kind::kTable) return child;
    error = Fail(StrCat("\"", key, "\" already holds a value, not a table")).error();
    return nullptr;
  }

  Result<Node*> Header(Node& root) {
    const bool array = Peek(1) == '[';
    pos_ += array ? 2 : 1;
    auto key = Key();
    if (!key) return std::unexpected(key.error());
    if (Peek() != ']' || (array && Peek(1) != ']')) {
      return Fail(array ? "expected ]] to close the [[table]] header"
                        : "expected ] to close the [table] header");
    }
    pos_ += array ? 2 : 1;
    Node* node = &root;
    std::optional<Error> error;
    for (std::size_t i = 0; i + 1 < key->size(); ++i) {
      node = ChildTable(*node, (*key)[i], error);
      if (node == nullptr) return std::unexpected(*error);
    }
    const std::string& last = key->back();
    Node* existing = node->Find(last);
    if (array) {
      if (existing == nullptr) {
        auto made = std::make_unique<Node>();
        made->kind = Kind::kArray;
        made->line = line_;
        existing = made.get();
        node->table.emplace_back(last, std::move(made));
      } else if (existing->kind != Kind::kArray) {
        return Fail(StrCat("[[", last, "]] names a key that is already a table or a value"));
      }
      auto table = std::make_unique<Node>();
      table->line = line_;
      table->explicit_table = true;
      Node* out = table.get();
      existing->array.push_back(std::move(table));
      return out;
    }
    if (existing == nullptr) {
      auto made = std::make_unique<Node>();
      made->line = line_;
      made->explicit_table = true;
      Node* out = made.get();
      node->table.emplace_back(last, std::move(made));
      return out;
    }
    if (existing->kind != Kind::kTable || existing->explicit_table) {
      return Fail(StrCat("table \"", last, "\" already exists"));
    }
    existing->explicit_table = true;
    existing->line = line_;
    return existing;
  }

  Status KeyValue(Node& table) {
    auto key = Key();
    if (!key) return std::unexpected(key.error());
    if (Peek() != '=') return Fail("expected = after the key");
    ++pos_;
    SkipSpace();
    Node* node = &table;
    std::optional<Error> error;
    for (std::size_t i = 0; i + 1 < key->size(); ++i) {
      node = ChildTable(*node, (*key)[i], error);
      if (node == nullptr) return std::unexpected(*error);
      node->explicit_table = true;
    }
    if (node->Find(key->back()) != nullptr) {
      return Fail(StrCat("key \"", key->back(), "\" already exists"));
    }
    auto value = Value();
    if (!value) return std::unexpected(value.error());
    node->table.emplace_back(key->back(), *std::move(value));
    return {};
  }

  Result<std::unique_ptr<Node>> Value() {
    auto node = std::make_unique<Node>();
    node->line = line_;
    const char c = Peek();
    if (c == '"' || c == '\'') {
      auto s = QuotedString();
      if (!s) return std::unexpected(s.error());
      node->kind = Kind::kString;
      node->string = *std::move(s);
      return node;
    }
    if (c == '[') return Fail("arrays are not used in ember's TOML files");
    if (c == '{') {
      return Fail("inline tables are not used in ember's TOML files; write a [table] instead");
    }
    if (AtLineEnd()) return Fail("a key needs a value after =");
    const std::size_t start = pos_;
    while (!AtEnd() && !AtLineEnd() && Peek() != ' ' && Peek() != '\t') ++pos_;
    const std::string_view word = text_.substr(start, pos_ - start);
    if (word == "true" || word == "false") {
      node->kind = Kind::kBoolean;
      node->boolean = word == "true";
      return node;
    }
    return Number(word, std::move(node));
  }

  Result<std::unique_ptr<Node>> Number(std::string_view word, std::unique_ptr<Node> node) {
    std::string_view body = word;
    const bool negative = !body.empty() && body[0] == '-';
    if (!body.empty() && (body[0] == '+' || body[0] == '-')) body.remove_prefix(1);
    if (body == "inf" || body == "nan") {
      node->kind = Kind::kFloat;
      node->floating = body == "inf" ? std::numeric_limits<double>::infinity()
                                     : std::numeric_limits<double>::quiet_NaN();
      if (negative) node->floating = -node->floating;
      return node;
    }
    if (body.size() > 1 && body[0] == '0' && (body[1] == 'x' || body[1] == 'o' || body[1] == 'b')) {
      return Fail("hexadecimal, octal and binary integers are not used in ember's TOML files");
    }
    // Digits with single underscores between them; a fraction and/or an exponent make a float.
    std::string digits;
    bool is_float = false;
    std::size_t i = 0;
    auto run = [&](bool required) {
      const std::size_t first = i;
      while (i < body.size()) {
        if (body[i] >= '0' && body[i] <= '9') {
          digits += body[i++];
        } else if (body[i] == '_' && i > first && i + 1 < body.size() && body[i + 1] >= '0' &&
                   body[i + 1] <= '9' && body[i - 1] != '_') {
          ++i;
        } else {
          break;
        }
      }
      return !required || i > first;
    };
    const std::size_t int_start = 0;
    if (!run(true)) return Fail(StrCat("\"", word, "\" is not a value ember's TOML files know"));
    if (body[int_start] == '0' && i > int_start + 1) {
      return Fail(StrCat("\"", word, "\": leading zeros are not allowed"));
    }
    if (i < body.size() && body[i] == '.') {
      is_float = true;
      digits += body[i++];
      if (!run(true)) return Fail(StrCat("\"", word, "\": a fraction needs digits"));
    }
    if (i < body.size() && (body[i] == 'e' || body[i] == 'E')) {
      is_float = true;
      digits += 'e';
      ++i;
      if (i < body.size() && (body[i] == '+' || body[i] == '-')) digits += body[i++];
      if (!run(true)) return Fail(StrCat("\"", word, "\": an exponent needs digits"));
    }
    if (i != body.size()) {
      if (word.find(':') != std::string_view::npos ||
          (i == 4 && i < body.size() && body[i] == '-')) {
        return Fail("dates and times are not used in ember's TOML files");
      }
      return Fail(StrCat("\"", word, "\" is not a value ember's TOML files know"));
    }
    if (negative) digits.insert(digits.begin(), '-');
    node->number_text = digits;
    const char* first = digits.data();
    const char* last = digits.data() + digits.size();
    if (is_float) {
      auto [end, ec] = std::from_chars(first, last, node->floating);
      if (ec != std::errc() || end != last) return Fail(StrCat("\"", word, "\" is out of range"));
      node->kind = Kind::kFloat;
    } else {
      auto [end, ec] = std::from_chars(first, last, node->integer);
      if (ec != std::errc() || end != last) {
        return Fail(StrCat("\"", word, "\" does not fit a 64-bit integer"));
      }
      node->kind = Kind::kInteger;
    }
    return node;
  }

  std::string_view text_;
  std::string_view file_;
  std::size_t pos_ = 0;
  int line_ = 1;
};

// ember's deepest key is tenants.NAME.models."ID" (tenants.toml). Before the reader sees the text,
// a scan that skips comments and strings refuses nesting deeper than kMaxNesting and a line with
// more than kMaxDots dots outside strings (each dot is one more level of nested tables, which
// are freed recursively), and the file is capped at kMaxBytes: a hand-edited or hostile file
// gets an error with its line, never a crash or a hang (fuzz/tenants_fuzz.cc, fuzz/prices_fuzz.cc).
// toml11, used before, overflowed its stack on 200,000 '[' and took minutes over 100,000 dotted
// parts.
constexpr int kMaxNesting = 32;
constexpr int kMaxDots = 32;
constexpr std::size_t kMaxBytes = 16u << 20;

Status CheckShape(std::string_view text, std::string_view file_name) {
  if (text.size() > kMaxBytes) {
    return InvalidArgument(StrCat(file_name, ": larger than ", kMaxBytes >> 20, " MiB"));
  }
  int depth = 0, dots = 0, line = 1;
  std::size_t i = 0;
  const std::size_t n = text.size();
  auto skip_to_eol = [&] {
    while (i < n && text[i] != '\n') ++i;
  };
  while (i < n) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
      dots = 0;
      ++i;
    } else if (c == '#') {
      skip_to_eol();
    } else if (c == '"' || c == '\'') {
      const bool basic = c == '"';
      if (text.substr(i, 3) == std::string(3, c)) {  // multi-line string
        i += 3;
        while (i < n && text.substr(i, 3) != std::string(3, c)) {
          if (text[i] == '\n') ++line;
          i += basic && text[i] == '\\' ? 2 : 1;
        }
        i += 3;
      } else {
        ++i;
        while (i < n && text[i] != c && text[i] != '\n') i += basic && text[i] == '\\' ? 2 : 1;
        if (i < n && text[i] == c) ++i;
      }
    } else {
      if (c == '[' || c == '{') {
        if (++depth > kMaxNesting) {
          return InvalidArgument(StrCat(file_name, ":", line,
                                        ": arrays or tables nested deeper than ", kMaxNesting,
                                        " levels"));
        }
      } else if ((c == ']' || c == '}') && depth > 0) {
        --depth;
      } else if (c == '.' && ++dots > kMaxDots) {
        return InvalidArgument(
            StrCat(file_name, ":", line, ": a key with more than ", kMaxDots, " dotted parts"));
      }
      ++i;
    }
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<Node>> Read(std::string_view text, std::string_view file_name) {
  if (Status shape = CheckShape(text, file_name); !shape) return std::unexpected(shape.error());
  return Reader(text, file_name).Run();
}

std::string_view KindName(const Node& node) {
  switch (node.kind) {
    case Kind::kBoolean:
      return "a boolean";
    case Kind::kInteger:
      return "an integer";
    case Kind::kFloat:
      return "a float";
    case Kind::kString:
      return "a string";
    case Kind::kArray:
      return "an array of tables";
    case Kind::kTable:
      return "a table";
  }
  return "a value";
}

std::unexpected<Error> ErrorAt(std::string_view file, const Node& at, std::string_view why) {
  return InvalidArgument(StrCat(file, ":", at.line, ": ", why));
}

Status CheckKey(std::string_view file, const std::string& key, const Node& value,
                std::string_view where, std::span<const std::string_view> allowed) {
  if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) return {};
  std::string list;
  for (std::string_view a : allowed) list += StrCat(list.empty() ? "" : ", ", a);
  return ErrorAt(file, value,
                 StrCat("unknown key \"", key, "\" ", where, " (allowed: ", list, ")"));
}

Result<Microdollars> Dollars(std::string_view file, const Node& value, std::string_view what) {
  if (!value.is_integer() && !value.is_floating()) {
    return ErrorAt(file, value,
                   StrCat(what, " must be a number of dollars, not ", KindName(value)));
  }
  if (value.number_text.empty()) {  // inf, nan
    return ErrorAt(file, value, StrCat(what, " must be a decimal number of dollars, e.g. 0.15"));
  }
  auto micros = ParseDollars(value.number_text, what);
  if (!micros) return ErrorAt(file, value, micros.error().message);
  return *micros;
}

}  // namespace ember::toml
