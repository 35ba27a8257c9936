#!/usr/bin/env python3
"""Writes the data-preparation test sets in tests/fixtures/dataprep/, independently of Polytune.

Nothing here calls Polytune's code. The sets are made from text people wrote, or by rules
implemented here from their published definitions:

  lid.jsonl      Human translations of software messages: the msgstr strings of the gettext
                 catalogs Debian 12 installs under /usr/share/locale/<lang>/LC_MESSAGES/*.mo
                 (read with Python's own gettext module), labelled with the catalog's language.
                 Per language and length bucket (short: 10-29 characters, medium: 30-99, long:
                 100-400) a seeded sample of strings that differ from their English msgid, with
                 format placeholders, markup and accelerators removed.
  pii.jsonl      Sentences in 10 languages around personal data whose values are made here:
                 IBANs with mod-97 check digits (ISO 13616), Luhn-valid card numbers on real
                 network prefixes, Spanish DNI/NIE letters (mod 23), Brazilian CPF (two mod-11
                 digits), Chinese resident IDs (ISO 7064 MOD 11-2), Aadhaar (Verhoeff), IPv4/IPv6
                 (Python's ipaddress), phones in each country's published numbering plan, emails;
                 and decoys that must stay: dates, prices, ISBN-13s, order numbers, times, versions,
                 and identifiers with one digit changed so their checksum fails.
  neardup.jsonl  Documents of 40-140 words joined from long catalog strings, with variants made
                 by editing words; each record carries the real Jaccard similarity of its 5-word
                 (or, for zh/ja/th, 5-character) shingle sets with its family's original,
                 computed here after NFKC case folding and punctuation removal.

Rerun: python3 tests/reference/make_dataprep_fixtures.py (needs the Debian locale catalogs).
"""
import gettext
import glob
import ipaddress
import json
import os
import random
import re
import unicodedata
from difflib import SequenceMatcher

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "dataprep")
LID_LANGS = {"es": ["es"], "de": ["de"], "id": ["id"], "fr": ["fr"], "pt": ["pt_BR", "pt"], "it": ["it"],
             "nl": ["nl"], "pl": ["pl"], "tr": ["tr"], "ru": ["ru"], "uk": ["uk"], "vi": ["vi"], "sv": ["sv"],
             "cs": ["cs"], "ja": ["ja"], "zh": ["zh_CN"], "ko": ["ko"], "el": ["el"], "ar": ["ar"], "hi": ["hi"]}
BUCKETS = [("short", 10, 30), ("medium", 30, 100), ("long", 100, 401)]
PER_BUCKET = 25
SPACELESS = {"zh", "ja", "th"}

PLACEHOLDER = re.compile(r"%(\([^)]*\))?[-+ #0-9.$lhqjzt]*[a-zA-Z%]|\{[^{}]*\}|<[^<>]*>|\$\{[^}]*\}|&[a-z]+;")
ACCEL = re.compile(r"(?<=\w)_(?=\w)|(?<![\w&])[_&](?=\w)")


def clean(text):
    text = PLACEHOLDER.sub(" ", text)
    text = ACCEL.sub("", text)
    text = re.sub(r"\\[nt]|[\n\t]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def letter_ratio(text):
    letters = sum(1 for c in text if unicodedata.category(c).startswith("L"))
    return letters / max(1, len(text))


def catalog_strings(locales):
    out = set()
    for loc in locales:
        for path in sorted(glob.glob(f"/usr/share/locale/{loc}/LC_MESSAGES/*.mo")):
            try:
                with open(path, "rb") as f:
                    cat = gettext.GNUTranslations(f)._catalog
            except Exception:
                continue
            for key, value in cat.items():
                msgid = key[0] if isinstance(key, tuple) else key
                if not msgid or not value or value == msgid:
                    continue
                text = clean(value)
                if len(text) < 10 or letter_ratio(text) < 0.6:
                    continue
                # Near-copies of the English msgid are not translations.
                if SequenceMatcher(None, clean(msgid).lower(), text.lower()).ratio() > 0.6:
                    continue
                out.add(text)
    return sorted(out)


def make_lid(rng):
    rows = []
    for lang, locales in LID_LANGS.items():
        strings = catalog_strings(locales)
        for bucket, lo, hi in BUCKETS:
            pool = [s for s in strings if lo <= len(s) < hi]
            for text in rng.sample(pool, min(PER_BUCKET, len(pool))):
                rows.append({"text": text, "lang": lang, "bucket": bucket})
    return rows


# ---- PII ----

def iban(country, bban):
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


def group4(s):
    return " ".join(s[i:i + 4] for i in range(0, len(s), 4))


def luhn_complete(prefix, length, rng):
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def dni(rng):
    n = rng.randrange(10000000, 99999999)
    return f"{n:08d}{'TRWAGMYFPDXBNJZSQVHLCKE'[n % 23]}"


def nie(rng):
    first = rng.choice("XYZ")
    n = rng.randrange(1000000, 9999999)
    return f"{first}{n:07d}{'TRWAGMYFPDXBNJZSQVHLCKE'[int(str('XYZ'.index(first)) + f'{n:07d}') % 23]}"


def cpf(rng):
    while True:
        d = [rng.randrange(10) for _ in range(9)]
        if len(set(d)) > 1:
            break
    for k in (9, 10):
        s = sum(d[i] * (k + 1 - i) for i in range(k))
        d.append((s * 10) % 11 % 10)
    s = "".join(map(str, d))
    return f"{s[:3]}.{s[3:6]}.{s[6:9]}-{s[9:]}"


def cn_id(rng):
    w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    body = f"{rng.choice(['110105', '310104', '440305', '510107'])}{rng.randrange(1950, 2005)}" \
           f"{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}{rng.randrange(0, 1000):03d}"
    return body + "10X98765432"[sum(int(body[i]) * w[i] for i in range(17)) % 11]


VD = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
      [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
      [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
      [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]
VP = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
      [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
      [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8]]
VINV = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9]


def aadhaar(rng):
    body = str(rng.randrange(2, 10)) + "".join(rng.choice("0123456789") for _ in range(10))
    c = 0
    for i, ch in enumerate(reversed(body)):
        c = VD[c][VP[(i + 1) % 8][int(ch)]]
    s = body + str(VINV[c])
    return f"{s[:4]} {s[4:8]} {s[8:]}"


def digits(rng, n):
    return "".join(rng.choice("0123456789") for _ in range(n))


def isbn13(rng):
    body = "978" + digits(rng, 9)
    total = sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(body))
    s = body + str((10 - total % 10) % 10)
    return f"{s[:3]}-{s[3]}-{s[4:7]}-{s[7:12]}-{s[12]}"


def break_digit(value, rng):
    """One digit changed, so a checksum fails (checked by the caller's validator)."""
    positions = [i for i, c in enumerate(value) if c.isdigit()]
    i = rng.choice(positions[1:])
    return value[:i] + str((int(value[i]) + rng.randrange(1, 10)) % 10) + value[i + 1:]


PHONES = {  # numbering plans: (format, region), the x's random digits
    "es": ["6xx xxx xxx", "+34 6xx xx xx xx", "91 xxx xx xx"],
    "de": ["0151 2xxxxxxx", "+49 30 2xxxxxxx", "030 2xxxxxxx"],
    "id": ["0812-xxxx-xxxx", "+62 812 xxxx xxxx", "+62 21 5xxx xxxx"],
    "pt": ["(11) 98xxx-xxxx", "+55 21 99xxx-xxxx"],
    "fr": ["06 1x xx xx xx", "+33 1 4x xx xx xx"],
    "en": ["+1 415 2xx xxxx", "(212) 5xx-xxxx", "+44 20 7xxx xxxx"],
    "it": ["+39 347 xxx xxxx", "347 xxx xxxx"],
    "zh": ["138 xxxx xxxx", "+86 139 xxxx xxxx"],
    "hi": ["+91 98xxx xxxxx", "098xxx xxxxx"],
    "tr": ["0532 xxx xx xx", "+90 532 xxx xx xx"],
}

TEMPLATES = {
    "es": ["El paciente {name} (DNI {dni}) puede ser contactado en el {phone} o en {email}.",
           "Transferir el pago a la cuenta {iban} antes del {date}; importe {price}.",
           "La tarjeta {card} fue rechazada; el pedido nº {order} sigue pendiente.",
           "NIE del titular: {nie}. Servidor de origen {ipv4}.",
           "Ver el libro ISBN {isbn} y la factura del {date} por {price}."],
    "de": ["Bitte überweisen Sie {price} bis zum {date} auf das Konto {iban}.",
           "Der Kunde ist unter {phone} oder {email} erreichbar; Bestellnummer {order}.",
           "Zahlung mit Karte {card} am {date} um {time} Uhr abgelehnt.",
           "Zugriff von {ipv6} und {ipv4} protokolliert (Version {version})."],
    "id": ["Nasabah dapat dihubungi di {phone} atau {email}; nomor pesanan {order}.",
           "Pembayaran sebesar {price} ke rekening {iban} jatuh tempo pada {date}.",
           "Kartu {card} milik nasabah diblokir pada pukul {time}."],
    "pt": ["O CPF {cpf} do paciente e o telefone {phone} foram atualizados em {date}.",
           "Pagamento de {price} com o cartão {card}; pedido {order}.",
           "Contato: {email}, IBAN {iban}."],
    "fr": ["Le client joignable au {phone} ou à {email} doit {price} depuis le {date}.",
           "Virement sur le compte {iban} ; commande n° {order}, ISBN {isbn}."],
    "en": ["Call {phone} or write to {email} about order {order} from {date}.",
           "Card {card} was charged {price}; the request came from {ipv4} at {time}.",
           "Patient record updated from {ipv6}; see ISBN {isbn}, version {version}."],
    "it": ["Il paziente è raggiungibile al {phone} o a {email}; IBAN {iban}.",
           "Ordine {order} del {date}, importo {price}, carta {card}."],
    "zh": ["患者身份证号码{cnid}，联系电话{phone}，邮箱{email}。",
           "订单{order}于{date}支付{price}，银行卡{card}。",
           "请于{date}前将款项汇入账户{iban}。"],
    "hi": ["ग्राहक का आधार {aadhaar} और फ़ोन {phone} है; ईमेल {email}.",
           "भुगतान {price} कार्ड {card} से {date} को किया गया।"],
    "tr": ["Müşteriye {phone} numarasından veya {email} adresinden ulaşılabilir; IBAN {iban}.",
           "{date} tarihli {order} numaralı sipariş için {price} ödendi."],
}

PRICES = {"es": ["1.299,00 €", "45,50 €"], "de": ["1.299,00 €", "12,99 EUR"], "id": ["Rp 150.000", "Rp 2.500.000"],
          "pt": ["R$ 1.234,56", "R$ 89,90"], "fr": ["1 299,00 €", "45,50 €"], "en": ["$1,299.99", "£45.50"],
          "it": ["1.299,00 €", "€ 45,50"], "zh": ["¥1299.00", "人民币3500元"], "hi": ["₹1,25,000", "₹499"],
          "tr": ["1.299,00 TL", "₺450"]}
DATES = {"es": "12/05/2024", "de": "12.05.2024", "id": "12-05-2024", "pt": "12/05/2024", "fr": "12/05/2024",
         "en": "2024-05-12", "it": "12/05/2024", "zh": "2024年5月12日", "hi": "12/05/2024", "tr": "12.05.2024"}
NAMES = ["Ana García", "Jonas Weber", "Siti Rahayu", "João Silva", "Chloé Martin", "Emily Clark", "Luca Rossi",
         "王芳", "अमित शर्मा", "Ayşe Yılmaz"]


def make_pii(rng):
    rows = []
    iban_makers = [lambda: iban("DE", digits(rng, 18)), lambda: iban("ES", digits(rng, 20)),
                   lambda: iban("FR", digits(rng, 23)), lambda: iban("NL", "ABNA" + digits(rng, 10)),
                   lambda: iban("GB", "NWBK" + digits(rng, 14)), lambda: iban("TR", digits(rng, 22)),
                   lambda: iban("IT", "X" + digits(rng, 22)), lambda: iban("BR", digits(rng, 23) + "P1")]
    card_makers = [lambda: luhn_complete("4", 16, rng), lambda: luhn_complete(rng.choice(["51", "53", "55"]), 16, rng),
                   lambda: luhn_complete(rng.choice(["34", "37"]), 15, rng), lambda: luhn_complete("6011", 16, rng),
                   lambda: luhn_complete("62", 16, rng)]
    for round_ in range(20):
        for lang, templates in TEMPLATES.items():
            for template in templates:
                pii, decoys = [], []

                def val(kind):
                    if kind == "phone":
                        v = "".join(rng.choice("0123456789") if c == "x" else c for c in rng.choice(PHONES[lang]))
                        pii.append({"type": "phone", "value": v})
                    elif kind == "email":
                        user = rng.choice(["maria.lopez", "j.weber", "siti_r", "joao.silva+lab", "c.martin",
                                           "emily", "l.rossi", "wangfang", "amit.sharma", "ayse.yilmaz"])
                        v = f"{user}{rng.randrange(1, 99)}@{rng.choice(['correo.es', 'beispiel.de', 'contoh.co.id', 'exemplo.com.br', 'example.org'])}"
                        pii.append({"type": "email", "value": v})
                    elif kind == "iban":
                        raw = rng.choice(iban_makers)()
                        if rng.random() < 0.3:
                            decoys.append(group4(break_digit(raw, rng)))
                            v = decoys[-1]
                        else:
                            v = rng.choice([raw, group4(raw)])
                            pii.append({"type": "iban", "value": v})
                    elif kind == "card":
                        raw = rng.choice(card_makers)()
                        if rng.random() < 0.3:
                            v = group4(break_digit(raw, rng))
                            decoys.append(v)
                        else:
                            v = rng.choice([raw, group4(raw), "-".join(raw[i:i + 4] for i in range(0, len(raw), 4))])
                            pii.append({"type": "card", "value": v})
                    elif kind in ("dni", "nie", "cpf", "cnid", "aadhaar"):
                        v = {"dni": dni, "nie": nie, "cpf": cpf, "cnid": cn_id, "aadhaar": aadhaar}[kind](rng)
                        if rng.random() < 0.25:
                            v = break_digit(v, rng)
                            decoys.append(v)
                        else:
                            pii.append({"type": "id", "value": v})
                    elif kind == "ipv4":
                        if rng.random() < 0.2:
                            v = f"{rng.randrange(256, 999)}.{rng.randrange(0, 255)}.{rng.randrange(0, 255)}.{rng.randrange(1, 255)}"
                            decoys.append(v)
                        else:
                            v = str(ipaddress.IPv4Address(rng.randrange(1 << 24, 0xDFFFFFFF)))
                            pii.append({"type": "ip", "value": v})
                    elif kind == "ipv6":
                        v = str(ipaddress.IPv6Address((0x2001_0db8 << 96) | rng.getrandbits(64)))
                        pii.append({"type": "ip", "value": v})
                    elif kind == "order":
                        v = rng.choice([f"{rng.randrange(2020, 2025)}{rng.randrange(1, 13):02d}-{digits(rng, 4)}",
                                        f"{digits(rng, 4)}-{digits(rng, 4)}-{digits(rng, 2)}", f"#{digits(rng, 6)}",
                                        f"A{digits(rng, 7)}"])
                        decoys.append(v)
                    elif kind == "price":
                        v = rng.choice(PRICES[lang])
                        decoys.append(v)
                    elif kind == "date":
                        v = DATES[lang]
                        decoys.append(v)
                    elif kind == "time":
                        v = rng.choice(["10:30", "23:15:07", "08:05"])
                        decoys.append(v)
                    elif kind == "isbn":
                        v = isbn13(rng)
                        decoys.append(v)
                    elif kind == "version":
                        v = rng.choice(["1.2.3", "v2.10.4", "3.14159", "10.0.19045"])
                        decoys.append(v)
                    elif kind == "name":
                        v = rng.choice(NAMES)
                    return v

                text = re.sub(r"\{(\w+)\}", lambda m: val(m.group(1)), template)
                rows.append({"text": text, "lang": lang, "pii": pii, "decoys": decoys})
    return rows


# ---- near duplicates ----

def match_normalize(text):
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(c).startswith("P") or c.isspace() else c for c in text)
    return " ".join(text.split())


def shingles(text, lang, n=5):
    norm = match_normalize(text)
    units = [c for c in norm if c != " "] if lang in SPACELESS else norm.split()
    k = min(n, len(units))
    return {tuple(units[i:i + k]) for i in range(len(units) - k + 1)} if units else set()


def jaccard(a, b):
    return len(a & b) / len(a | b) if (a or b) else 1.0


def make_neardup(rng):
    langs = {"es": ["es"], "de": ["de"], "id": ["id"], "fr": ["fr"], "ru": ["ru"], "tr": ["tr"], "zh": ["zh_CN"],
             "ja": ["ja"]}
    rows = []
    for lang, locales in langs.items():
        strings = [s for s in catalog_strings(locales) if len(s) >= 60]
        rng.shuffle(strings)
        pool = iter(strings)
        for family in range(25):
            parts, words = [], 0
            target = rng.randrange(40, 140)
            while words < target:
                s = next(pool)
                parts.append(s)
                words += len(s) // 2 if lang in SPACELESS else len(s.split())
            base = " ".join(parts)
            fid = f"{lang}-{family}"
            rows.append({"family": fid, "kind": "original", "lang": lang, "text": base})
            # Variants: edits of a few words or characters, from light to heavy.
            for v in range(rng.randrange(1, 4)):
                units = list(base) if lang in SPACELESS else base.split()
                edits = max(1, int(len(units) * rng.choice([0.005, 0.01, 0.02, 0.04, 0.08, 0.15])))
                for _ in range(edits):
                    i = rng.randrange(len(units))
                    op = rng.random()
                    if op < 0.4:
                        units[i] = rng.choice(units)
                    elif op < 0.7 and len(units) > 10:
                        del units[i]
                    else:
                        units.insert(i, rng.choice(units))
                text = "".join(units) if lang in SPACELESS else " ".join(units)
                rows.append({"family": fid, "kind": "variant", "lang": lang, "text": text})
            # An exact duplicate after normalisation: other case and punctuation.
            if family % 3 == 0:
                if lang == "tr":
                    dup = base.replace("i", "İ").replace("ı", "I").upper()
                else:
                    dup = base.upper() if lang not in SPACELESS else base
                dup = dup.replace(",", " ,").replace(".", "!") + " ..."
                assert match_normalize(dup) == match_normalize(base) or lang == "tr", fid
                rows.append({"family": fid, "kind": "exact", "lang": lang, "text": dup})
    rng.shuffle(rows)
    # Originals first, so each family's original is the one a first-wins dedup keeps; every
    # other row records its real Jaccard with each earlier member of its family.
    ordered = [r for r in rows if r["kind"] == "original"] + [r for r in rows if r["kind"] != "original"]
    members = {}
    for i, r in enumerate(ordered):
        r["id"] = i
        sh = shingles(r["text"], r["lang"])
        if r["kind"] != "original":
            r["jaccard_with"] = {str(j): round(jaccard(sh, other), 6) for j, other in members.get(r["family"], [])}
        members.setdefault(r["family"], []).append((i, sh))
    return ordered


def write(name, rows):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {name}: {len(rows)} lines")


def main():
    write("lid.jsonl", make_lid(random.Random(11)))
    write("pii.jsonl", make_pii(random.Random(12)))
    write("neardup.jsonl", make_neardup(random.Random(13)))


if __name__ == "__main__":
    main()
