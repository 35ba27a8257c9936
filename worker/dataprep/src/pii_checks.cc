#include "polytune/dataprep/pii_checks.h"

#include <arpa/inet.h>

#include <cstdint>
#include <string>

namespace polytune::dataprep {
namespace {

bool AllDigits(std::string_view s) {
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return !s.empty();
}

int Prefix(std::string_view digits, size_t n) {
  int v = 0;
  for (size_t i = 0; i < n && i < digits.size(); ++i) v = v * 10 + (digits[i] - '0');
  return v;
}

int IbanLength(std::string_view country) {
  // SWIFT IBAN registry lengths.
  static constexpr struct {
    char code[3];
    int length;
  } kLengths[] = {{"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16}, {"BG", 22},
                  {"BH", 22}, {"BI", 27}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24},
                  {"DE", 22}, {"DJ", 27}, {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18},
                  {"FK", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27},
                  {"GT", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IQ", 23}, {"IS", 26}, {"IT", 27},
                  {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20}, {"LU", 20},
                  {"LV", 21}, {"LY", 25}, {"MC", 27}, {"MD", 24}, {"ME", 22}, {"MK", 19}, {"MN", 20}, {"MR", 27},
                  {"MT", 31}, {"MU", 30}, {"NI", 28}, {"NL", 18}, {"NO", 15}, {"OM", 23}, {"PK", 24}, {"PL", 28},
                  {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"RU", 33}, {"SA", 24}, {"SC", 31},
                  {"SD", 18}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"SO", 23}, {"ST", 25}, {"SV", 28},
                  {"TL", 23}, {"TN", 24}, {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20}};
  for (const auto& e : kLengths)
    if (country == e.code) return e.length;
  return 0;
}

}  // namespace

bool LuhnValid(std::string_view digits) {
  if (!AllDigits(digits)) return false;
  int sum = 0;
  bool twice = false;
  for (size_t i = digits.size(); i-- > 0;) {
    int d = digits[i] - '0';
    if (twice) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
    twice = !twice;
  }
  return sum % 10 == 0;
}

bool PaymentCardValid(std::string_view d) {
  if (!AllDigits(d) || d.size() < 13 || d.size() > 19) return false;
  const size_t n = d.size();
  const int p2 = Prefix(d, 2), p3 = Prefix(d, 3), p4 = Prefix(d, 4);
  const bool network = (d[0] == '4' && (n == 13 || n == 16 || n == 19)) ||                     // Visa
                       (((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) && n == 16) ||  // Mastercard
                       ((p2 == 34 || p2 == 37) && n == 15) ||                                  // Amex
                       ((p4 == 6011 || (p3 >= 644 && p3 <= 649) || p2 == 65) && n >= 16) ||    // Discover
                       (p4 >= 3528 && p4 <= 3589 && n >= 16) ||                                // JCB
                       (((p3 >= 300 && p3 <= 305) || p2 == 36 || p2 == 38) && n >= 14) ||      // Diners
                       (p2 == 62 && n >= 16) ||                                                // UnionPay
                       ((p2 == 50 || (p2 >= 56 && p2 <= 69)) && n >= 13);                      // Maestro
  return network && LuhnValid(d);
}

bool IbanValid(std::string_view iban) {
  if (iban.size() < 15 || static_cast<int>(iban.size()) != IbanLength(iban.substr(0, 2))) return false;
  if (iban[2] < '0' || iban[2] > '9' || iban[3] < '0' || iban[3] > '9') return false;
  // ISO 7064 mod 97-10 over BBAN + country + check digits, letters as 10..35.
  int remainder = 0;
  for (size_t k = 0; k < iban.size(); ++k) {
    const char c = iban[(k + 4) % iban.size()];
    if (c >= '0' && c <= '9') {
      remainder = (remainder * 10 + (c - '0')) % 97;
    } else if (c >= 'A' && c <= 'Z') {
      remainder = (remainder * 100 + (c - 'A' + 10)) % 97;
    } else {
      return false;
    }
  }
  return remainder == 1;
}

bool SpanishDniNieValid(std::string_view id) {
  static constexpr char kLetters[] = "TRWAGMYFPDXBNJZSQVHLCKE";
  if (id.size() != 9) return false;
  std::string digits(id.substr(0, 8));
  if (digits[0] == 'X' || digits[0] == 'Y' || digits[0] == 'Z') digits[0] = static_cast<char>('0' + (digits[0] - 'X'));
  if (!AllDigits(digits)) return false;
  return id[8] == kLetters[std::stoul(digits) % 23];
}

bool BrazilCpfValid(std::string_view d) {
  if (d.size() != 11 || !AllDigits(d)) return false;
  if (d.find_first_not_of(d[0]) == std::string_view::npos) return false;  // 111.111.111-11 passes the sums
  for (int check = 9; check <= 10; ++check) {
    int sum = 0;
    for (int i = 0; i < check; ++i) sum += (d[i] - '0') * (check + 1 - i);
    if ((sum * 10) % 11 % 10 != d[check] - '0') return false;
  }
  return true;
}

bool ChinaResidentIdValid(std::string_view id) {
  static constexpr int kWeights[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
  static constexpr char kCheck[] = "10X98765432";
  if (id.size() != 18 || !AllDigits(id.substr(0, 17))) return false;
  const int year = Prefix(id.substr(6), 4), month = Prefix(id.substr(10), 2), day = Prefix(id.substr(12), 2);
  if (year < 1900 || year > 2099 || month < 1 || month > 12 || day < 1 || day > 31) return false;
  int sum = 0;
  for (int i = 0; i < 17; ++i) sum += (id[i] - '0') * kWeights[i];
  return id[17] == kCheck[sum % 11];
}

bool VerhoeffValid(std::string_view digits) {
  static constexpr uint8_t kD[10][10] = {{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 2, 3, 4, 0, 6, 7, 8, 9, 5},
                                         {2, 3, 4, 0, 1, 7, 8, 9, 5, 6}, {3, 4, 0, 1, 2, 8, 9, 5, 6, 7},
                                         {4, 0, 1, 2, 3, 9, 5, 6, 7, 8}, {5, 9, 8, 7, 6, 0, 4, 3, 2, 1},
                                         {6, 5, 9, 8, 7, 1, 0, 4, 3, 2}, {7, 6, 5, 9, 8, 2, 1, 0, 4, 3},
                                         {8, 7, 6, 5, 9, 3, 2, 1, 0, 4}, {9, 8, 7, 6, 5, 4, 3, 2, 1, 0}};
  static constexpr uint8_t kP[8][10] = {{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 5, 7, 6, 2, 8, 3, 0, 9, 4},
                                        {5, 8, 0, 3, 7, 9, 6, 1, 4, 2}, {8, 9, 1, 6, 0, 4, 3, 5, 2, 7},
                                        {9, 4, 5, 3, 1, 2, 6, 8, 7, 0}, {4, 2, 8, 6, 5, 7, 3, 9, 0, 1},
                                        {2, 7, 9, 3, 8, 0, 6, 4, 1, 5}, {7, 0, 4, 6, 9, 1, 3, 2, 5, 8}};
  if (!AllDigits(digits)) return false;
  int c = 0;
  for (size_t i = 0; i < digits.size(); ++i) c = kD[c][kP[i % 8][digits[digits.size() - 1 - i] - '0']];
  return c == 0;
}

bool AadhaarValid(std::string_view d) { return d.size() == 12 && AllDigits(d) && d[0] >= '2' && VerhoeffValid(d); }

bool Ipv4Valid(std::string_view text) {
  int parts = 0;
  size_t pos = 0;
  while (true) {
    const size_t dot = text.find('.', pos);
    const std::string_view part = text.substr(pos, dot == std::string_view::npos ? std::string_view::npos : dot - pos);
    if (part.empty() || part.size() > 3 || !AllDigits(part) || (part.size() > 1 && part[0] == '0')) return false;
    if (std::stoi(std::string(part)) > 255) return false;
    ++parts;
    if (dot == std::string_view::npos) break;
    pos = dot + 1;
  }
  return parts == 4;
}

bool Ipv6Valid(std::string_view text) {
  if (text.size() > 45) return false;
  in6_addr addr;
  return inet_pton(AF_INET6, std::string(text).c_str(), &addr) == 1;
}

}  // namespace polytune::dataprep
