// Scores of generated text against references: chrF and chrF++ exactly as sacreBLEU 2.x
// computes them, exact match after Unicode-aware normalisation, and classification figures.
//
// chrF (Popović 2015; sacreBLEU's CHRF defaults): character n-grams of orders 1..6 over code
// points with all whitespace removed (Python's str.split() set), beta 2, case kept, and
// sacreBLEU's "effective order" averaging (precision and recall averaged over the orders where
// both hypothesis and reference have n-grams, then one F-beta). chrF++ adds word 1- and 2-grams
// of the whitespace-split words, a single leading or trailing ASCII punctuation mark split off
// a word of two or more characters. Corpus scores sum the statistics of all segments first.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace polytune::text {

struct ChrfOptions {
  int char_order = 6;
  int word_order = 0;  // 2 for chrF++
  double beta = 2.0;
  static ChrfOptions ChrfPlusPlus() { return {6, 2, 2.0}; }
};

// Summable n-gram statistics: (hypothesis, reference, matched) counts per order, character
// orders first, then word orders.
struct ChrfStats {
  std::vector<int64_t> counts;
  void Add(const ChrfStats& other);
};

// Statistics of one hypothesis against one reference. Invalid UTF-8 counts as U+FFFD.
ChrfStats ChrfSegmentStats(const std::string& hypothesis, const std::string& reference, const ChrfOptions& options);
// The score in [0, 100] from (summed) statistics; 0 for empty statistics.
double ChrfScore(const ChrfStats& stats, const ChrfOptions& options);

// NFKC, full Unicode case folding, whitespace runs to one space, trimmed: what exact match
// and label matching compare.
std::string NormalizeForMatch(const std::string& text);
// NormalizeForMatch, then leading and trailing punctuation and symbols dropped (a model that
// answers "Positive." has answered "positive").
std::string NormalizeLabel(const std::string& text);

// Accuracy and macro precision, recall and F1 of predicted labels over a fixed class list
// (the declared label set, or every reference label of the evaluation set). A prediction
// outside the classes is wrong for its example (a miss of the reference class) and adds no
// class. Per class: precision tp/(tp+fp), recall tp/(tp+fn), F1 their harmonic mean, each 0
// when its denominator is; macro figures are plain means over the classes.
class ClassificationCounts {
 public:
  explicit ClassificationCounts(std::vector<std::string> classes);
  // Both already normalised (NormalizeLabel).
  void Add(const std::string& predicted, const std::string& reference);

  struct Figures {
    int64_t examples = 0;
    double accuracy = 0, macro_precision = 0, macro_recall = 0, macro_f1 = 0;
  };
  Figures Compute() const;
  int64_t examples() const { return static_cast<int64_t>(counts_[0]); }

  // Summable form (for ranks): [examples, correct, then tp, fp, fn per class].
  const std::vector<double>& counts() const { return counts_; }
  void set_counts(std::vector<double> counts) { counts_ = std::move(counts); }
  const std::vector<std::string>& classes() const { return classes_; }

 private:
  std::vector<std::string> classes_;
  std::map<std::string, size_t> index_;
  std::vector<double> counts_;
};

}  // namespace polytune::text
