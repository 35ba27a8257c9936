#include "polytune/dataprep/pii.h"

#include <gtest/gtest.h>

#include "polytune/dataprep/pii_checks.h"

namespace polytune::dataprep {
namespace {

// Known-valid values: card network test numbers, the IBAN registry's examples, the Spanish
// Interior Ministry's DNI letter rule, a CPF and a resident ID checked by hand, Verhoeff's "236"
// (check digit 3) from the algorithm's published example.
TEST(PiiChecks, AcceptsValidAndRefusesOneDigitOff) {
  EXPECT_TRUE(LuhnValid("4111111111111111"));
  EXPECT_FALSE(LuhnValid("4111111111111112"));
  EXPECT_TRUE(PaymentCardValid("4111111111111111"));
  EXPECT_TRUE(PaymentCardValid("378282246310005"));    // Amex
  EXPECT_TRUE(PaymentCardValid("5555555555554444"));   // Mastercard
  EXPECT_FALSE(PaymentCardValid("9781234567897"));     // an ISBN-13: no card network starts with 9
  EXPECT_FALSE(PaymentCardValid("1234567812345670"));  // Luhn-valid, no network
  EXPECT_TRUE(IbanValid("DE89370400440532013000"));
  EXPECT_TRUE(IbanValid("GB29NWBK60161331926819"));
  EXPECT_TRUE(IbanValid("NO9386011117947"));
  EXPECT_FALSE(IbanValid("DE89370400440532013001"));  // checksum
  EXPECT_FALSE(IbanValid("DE8937040044053201300"));   // length for DE
  EXPECT_FALSE(IbanValid("XX89370400440532013000"));  // no such country
  EXPECT_TRUE(SpanishDniNieValid("12345678Z"));
  EXPECT_FALSE(SpanishDniNieValid("12345678A"));
  EXPECT_TRUE(SpanishDniNieValid("X1234567L"));
  EXPECT_TRUE(BrazilCpfValid("52998224725"));
  EXPECT_FALSE(BrazilCpfValid("52998224724"));
  EXPECT_FALSE(BrazilCpfValid("11111111111"));
  EXPECT_TRUE(ChinaResidentIdValid("11010519491231002X"));
  EXPECT_FALSE(ChinaResidentIdValid("110105194912310021"));
  EXPECT_FALSE(ChinaResidentIdValid("11010519491331002X"));  // month 13
  EXPECT_TRUE(VerhoeffValid("2363"));
  EXPECT_FALSE(VerhoeffValid("2364"));
  EXPECT_TRUE(AadhaarValid("234567890124"));
  EXPECT_FALSE(AadhaarValid("234567890125"));
  EXPECT_FALSE(AadhaarValid("134567890120"));  // never starts with 0 or 1
  EXPECT_TRUE(Ipv4Valid("192.168.1.20"));
  EXPECT_FALSE(Ipv4Valid("256.1.1.1"));
  EXPECT_FALSE(Ipv4Valid("01.2.3.4"));
  EXPECT_TRUE(Ipv6Valid("2001:db8::8a2e:370:7334"));
  EXPECT_FALSE(Ipv6Valid("12:30:45"));
}

std::string ScrubOnce(const std::string& text, const std::string& lang, std::map<std::string, int64_t>* counts) {
  spec::PiiConfig config;
  auto scrubber = PiiScrubber::Create(config);
  EXPECT_TRUE(scrubber.ok()) << scrubber.status();
  return (*scrubber)->Scrub(text, lang, counts);
}

TEST(PiiScrubber, ReplacesEachTypeWithItsPlaceholder) {
  std::map<std::string, int64_t> counts;
  EXPECT_EQ(ScrubOnce("Escríbeme a maría.lópez@correo.es o llama al 612 345 678.", "es", &counts),
            "Escríbeme a <EMAIL> o llama al <PHONE>.");
  EXPECT_EQ(ScrubOnce("IBAN: DE89 3704 0044 0532 0130 00, danke.", "de", &counts), "IBAN: <IBAN>, danke.");
  EXPECT_EQ(ScrubOnce("Karte 4111 1111 1111 1111 läuft ab.", "de", &counts), "Karte <CARD> läuft ab.");
  EXPECT_EQ(ScrubOnce("Server 10.0.12.7 und fe80::1ff:fe23:4567:890a", "de", &counts), "Server <IP> und <IP>");
  EXPECT_EQ(ScrubOnce("DNI 12345678Z, CPF 529.982.247-25", "es", &counts), "DNI <ID>, CPF <ID>");
  EXPECT_EQ(ScrubOnce("身份证号码11010519491231002X。", "zh", &counts), "身份证号码<ID>。");
  EXPECT_EQ(ScrubOnce("Aadhaar 2345 6789 0124 dan telepon +62 812-3456-7890", "id", &counts),
            "Aadhaar <ID> dan telepon <PHONE>");
  EXPECT_EQ(counts["email"], 1);
  EXPECT_EQ(counts["phone"], 2);
  EXPECT_EQ(counts["iban"], 1);
  EXPECT_EQ(counts["card"], 1);
  EXPECT_EQ(counts["ip"], 2);
  EXPECT_EQ(counts["id"], 4);
}

TEST(PiiScrubber, LeavesDecoysAlone) {
  const std::vector<std::pair<std::string, std::string>> decoys = {
      {"de", "Rechnung vom 12.05.2024 über 1.299,00 € (Bestellnummer 4711-0815)."},
      {"en", "ISBN 978-3-16-148410-0, version 1.2.3.4.5, call at 10:30:45."},
      {"es", "DNI 12345678A no es válido y la tarjeta 4111 1111 1111 1112 tampoco."},
      {"pt", "O pedido 529.982.247-24 custa R$ 1.234,56."},
      {"en", "std::vector and a::b are code; 3.14159 is pi; 2024-01-15 is a date."},
  };
  for (const auto& [lang, text] : decoys) {
    std::map<std::string, int64_t> counts;
    EXPECT_EQ(ScrubOnce(text, lang, &counts), text) << lang;
  }
}

TEST(PiiScrubber, DatesAreNeverPhoneCandidatesButNumbersBesideThemAre) {
  // Every date shape the phone search sets aside, alone and in one run with a phone number.
  for (const std::string date : {"2024-05-12", "12.05.2024", "1. 1. 1970", "12/05/2024", "05/12/2024", "12-05-2024"}) {
    std::map<std::string, int64_t> counts;
    EXPECT_EQ(ScrubOnce("Cita el " + date + " a las 10.", "es", &counts), "Cita el " + date + " a las 10.");
    EXPECT_EQ(ScrubOnce("El " + date + " llamó al 612 345 678.", "es", &counts), "El " + date + " llamó al <PHONE>.");
    EXPECT_EQ(counts["phone"], 1) << date;
  }
  // Not a date (month 13), so still asked: and a valid Spanish number grouped as one.
  std::map<std::string, int64_t> counts;
  EXPECT_EQ(ScrubOnce("Llame al 612-345-678 hoy.", "es", &counts), "Llame al <PHONE> hoy.");
}

TEST(PiiScrubber, UserPatternsAndPlaceholdersAndTypes) {
  spec::PiiConfig config;
  config.types = {"email"};
  config.placeholders["email"] = "[correo]";
  config.patterns.push_back({"employee", "EMP-[0-9]{6}", "<EMPLOYEE>"});
  auto scrubber = PiiScrubber::Create(config);
  ASSERT_TRUE(scrubber.ok()) << scrubber.status();
  std::map<std::string, int64_t> counts;
  EXPECT_EQ((*scrubber)->Scrub("EMP-123456 ana@x.org 4111111111111111", "es", &counts),
            "<EMPLOYEE> [correo] 4111111111111111");
  EXPECT_EQ(counts["employee"], 1);
  EXPECT_EQ(counts.count("card"), 0u);
}

TEST(PiiScrubber, PhoneRegionsComeFromLanguageAndConfig) {
  spec::PiiConfig config;
  config.regions = {"MX"};
  auto scrubber = PiiScrubber::Create(config);
  ASSERT_TRUE(scrubber.ok());
  EXPECT_EQ((*scrubber)->PhoneRegions("de"), (std::vector<std::string>{"DE", "AT", "CH", "MX"}));
  EXPECT_EQ((*scrubber)->PhoneRegions("xx"), (std::vector<std::string>{"MX"}));
}

}  // namespace
}  // namespace polytune::dataprep
