#include "scheduler/prefix_store.h"

#include <gtest/gtest.h>

namespace ember::scheduler {
namespace {

using engine::Token;

struct TestCells final : engine::CellsSnapshot {
  TestCells(std::size_t size, int n, bool inv) : size(size), n(n), inv(inv) {}
  std::size_t size;
  int n;
  bool inv;
  std::size_t bytes() const override { return size; }
  int n_pos() const override { return n; }
  bool invariant() const override { return inv; }
};

// `n` tokens starting with `first`, then `first + 1`, ...: prompts that differ at token 0.
std::vector<Token> Tokens(Token first, int n) {
  std::vector<Token> t(n);
  for (int i = 0; i < n; ++i) t[i] = first * 1000 + i;
  return t;
}

bool Put(PrefixStore& store, std::string scope, std::vector<Token> tokens, std::size_t bytes,
         bool invariant = true) {
  const int n = static_cast<int>(tokens.size());
  return store.Put(std::move(scope), std::move(tokens),
                   std::make_unique<TestCells>(bytes, n, invariant));
}

TEST(PrefixStoreTest, BytesHeldNeverExceedTheBound) {
  PrefixStore store(1000);
  for (int i = 1; i <= 5; ++i) {
    EXPECT_TRUE(Put(store, "", Tokens(i, 40), 400));
    EXPECT_LE(store.bytes(), 1000u);
  }
  EXPECT_EQ(store.entries(), 2);
  EXPECT_EQ(store.bytes(), 800u);
  EXPECT_EQ(store.evictions(), 3u);
  // Larger than the whole bound: refused, and nothing is evicted for it.
  EXPECT_FALSE(Put(store, "", Tokens(9, 40), 1001));
  EXPECT_EQ(store.entries(), 2);
  EXPECT_FALSE(PrefixStore(0).enabled());
}

TEST(PrefixStoreTest, EvictsTheShorterPrefixFirstButNotAMuchMoreRecentOne) {
  PrefixStore store(1000);
  Put(store, "", Tokens(1, 100), 400);  // A: saves 100 tokens
  Put(store, "", Tokens(2, 40), 400);   // B: saves 40, used later
  Put(store, "", Tokens(3, 40), 400);   // evicts B, not the older but longer A
  EXPECT_NE(store.Find("", Tokens(1, 100), false).id, 0u);
  EXPECT_EQ(store.Find("", Tokens(2, 40), false).tokens, 0);
  Put(store, "", Tokens(4, 40), 400);  // evicts C (credit 40 + 40 < A's 100)
  EXPECT_EQ(store.Find("", Tokens(3, 40), false).tokens, 0);
  Put(store, "", Tokens(5, 40), 400);  // A's credit has run out against the newer entries
  EXPECT_EQ(store.Find("", Tokens(1, 100), false).tokens, 0);
  EXPECT_EQ(store.Find("", Tokens(4, 40), false).tokens, 40);
}

TEST(PrefixStoreTest, AHitRenewsAnEntrysCredit) {
  PrefixStore store(1000);
  Put(store, "", Tokens(1, 40), 400);
  Put(store, "", Tokens(2, 40), 400);
  store.Touch(store.Find("", Tokens(1, 40), false).id);
  Put(store, "", Tokens(3, 40), 400);  // equal credit: the one used least recently goes
  EXPECT_EQ(store.Find("", Tokens(1, 40), false).tokens, 40);
  EXPECT_EQ(store.Find("", Tokens(2, 40), false).tokens, 0);
}

TEST(PrefixStoreTest, AScopeSeesOnlyItsOwnEntries) {
  PrefixStore store(10'000);
  Put(store, "acme", Tokens(1, 40), 400);
  EXPECT_EQ(store.Find("globex", Tokens(1, 40), false).id, 0u);
  EXPECT_EQ(store.Find("acme", Tokens(1, 40), false).tokens, 40);
  // The same tokens for another scope are a separate entry, not covered by acme's.
  EXPECT_TRUE(Put(store, "globex", Tokens(1, 40), 400));
  EXPECT_EQ(store.entries(), 2);
}

TEST(PrefixStoreTest, FindsTheLongestSharedPrefixAmongEntries) {
  PrefixStore store(10'000);
  std::vector<Token> a = Tokens(1, 60);
  std::vector<Token> b = Tokens(1, 60);
  b[50] = -1;  // shares 50 with the prompt below
  a[35] = -1;  // shares 35
  Put(store, "", a, 600);
  Put(store, "", b, 600);
  const PrefixStore::Match m = store.Find("", Tokens(1, 80), false);
  EXPECT_EQ(m.tokens, 50);
  EXPECT_EQ(store.Get(m.id)->tokens, b);
}

TEST(PrefixStoreTest, ALongerEntryReplacesItsPrefixAndAPrefixOfAnEntryAddsNothing) {
  PrefixStore store(10'000);
  Put(store, "", Tokens(1, 40), 400);
  EXPECT_TRUE(Put(store, "", Tokens(1, 60), 600));
  EXPECT_EQ(store.entries(), 1);
  EXPECT_EQ(store.bytes(), 600u);
  EXPECT_TRUE(store.Covers("", Tokens(1, 50)));
  EXPECT_FALSE(Put(store, "", Tokens(1, 50), 500));
  EXPECT_EQ(store.entries(), 1);
}

TEST(PrefixStoreTest, ADeterministicLookupSeesOnlyInvariantCells) {
  PrefixStore store(10'000);
  Put(store, "", Tokens(1, 40), 400, /*invariant=*/false);
  EXPECT_EQ(store.Find("", Tokens(1, 40), true).id, 0u);
  EXPECT_EQ(store.Find("", Tokens(1, 40), false).tokens, 40);
}

}  // namespace
}  // namespace ember::scheduler
