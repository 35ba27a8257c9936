// Checksums and formats that tell personal identifiers from other numbers. Each takes the
// identifier without separators (spaces, dots, dashes removed) unless it says otherwise.
#pragma once

#include <string_view>

namespace polytune::dataprep {

bool LuhnValid(std::string_view digits);
// 13-19 digits, an issuer prefix of a card network (Visa, Mastercard, Amex, Discover, JCB,
// Diners, UnionPay, Maestro) and a valid Luhn digit.
bool PaymentCardValid(std::string_view digits);
// Upper-case IBAN: the country's registered length (SWIFT IBAN registry) and ISO 7064 mod 97-10.
bool IbanValid(std::string_view iban);
// Spanish DNI (8 digits + letter) or NIE (X/Y/Z + 7 digits + letter), mod-23 letter.
bool SpanishDniNieValid(std::string_view id);
// Brazilian CPF: 11 digits, two mod-11 check digits, not all digits equal.
bool BrazilCpfValid(std::string_view digits);
// Chinese resident identity card: 17 digits + ISO 7064 MOD 11-2 check (0-9 or X), with a
// plausible birth date in digits 7-14.
bool ChinaResidentIdValid(std::string_view id);
// Indian Aadhaar: 12 digits, first 2-9, Verhoeff check digit.
bool AadhaarValid(std::string_view digits);
bool VerhoeffValid(std::string_view digits);
// Dotted quad, each part 0-255 without leading zeros.
bool Ipv4Valid(std::string_view text);
bool Ipv6Valid(std::string_view text);  // as inet_pton(AF_INET6) accepts it

}  // namespace polytune::dataprep
