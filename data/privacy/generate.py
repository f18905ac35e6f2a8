"""Build the labelled PII sets data/privacy/dev.jsonl and data/privacy/heldout.jsonl.

Every message is a hand-written template filled with generated values; the span of each PII value is recorded.
The two parts share no template and no value list (names, places, streets, e-mail domains, companies), and their
numbers come from different random streams; the held-out templates are worded differently. Each part also has
messages without PII that are full of look-alikes (versions, section, order and part numbers, tickers, ISIN and
CUSIP codes, prices, percentages, trade dates, company names).

Usage: python data/privacy/generate.py   (writes both files; the seed is fixed, so the output is reproducible)

Line format: {"text": ..., "spans": [{"start", "end", "type"}], "source": "support" | "finance", "pii": bool}
"""

from __future__ import annotations

import json
import random
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

SEED = 20240611
HERE = Path(__file__).resolve().parent
ZWSP, ZWNJ, WJ, SHY = "\u200b", "\u200c", "\u2060", "\u00ad"
EN_DASH, EM_DASH, NBSP = "\u2013", "\u2014", "\u00a0"
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")

# --------------------------------------------------------------------------------------------------------------------
# Value lists, one per part
# --------------------------------------------------------------------------------------------------------------------

POOLS = {
    "dev": {
        "first": ["Sarah", "James", "Priya", "Tomasz", "Aisha", "Liam", "Mei", "Carlos", "Fatima", "Oliver", "Chloe",
                  "Daniel", "Amara", "Lukas", "Sofia", "Hiroshi", "Grace", "Mohammed", "Ingrid", "Kwame", "Elena",
                  "Patrick", "Nadia", "Ethan", "Yusuf", "Hannah", "Mateo", "Siobhan", "Arjun", "Zoe", "Dmitri",
                  "Olivia", "Rafael", "Leah", "Kofi", "Emily", "Javier", "Anna", "Rohan", "Isabel"],
        "last": ["O'Connor", "Patel", "Kowalski", "Nguyen", "Okafor", "Fischer", "Hernandez", "Chen", "Murphy",
                 "Schmidt", "Ahmed", "Rossi", "Johansson", "Mensah", "Dubois", "Tanaka", "Walsh", "Ivanova",
                 "Smith-Jones", "Gallagher", "Costa", "Lindqvist", "Haddad", "Novak", "Brennan", "Kaur", "Moreau",
                 "Adeyemi", "Bianchi", "Sato", "McAllister", "Petrov", "Oyelaran", "Lopez", "Whitfield", "Hughes"],
        "city": ["Manchester", "Leeds", "Bristol", "Glasgow", "Cardiff", "Lisbon", "Madrid", "Berlin", "Chicago",
                 "Boston", "Toronto", "Dublin", "Edinburgh", "Liverpool", "Seattle", "Denver", "Rotterdam", "Lyon",
                 "Milan", "Krakow", "Austin", "Vancouver", "Belfast", "Sheffield"],
        "region": ["Yorkshire", "Bavaria", "Ontario", "California", "Scotland", "Texas", "Catalonia", "Wales"],
        "country": ["Germany", "Spain", "Poland", "Canada", "Ireland", "Portugal", "Japan", "Brazil", "India",
                    "Italy", "Mexico", "Nigeria"],
        "street": ["High", "Church", "Station", "Victoria", "Mill", "Park", "Queen", "King", "Oak", "Elm", "Maple",
                   "Baker", "Castle", "Bridge", "Market", "Green"],
        "street_type": ["Street", "Road", "Lane", "Avenue", "Close", "Drive", "St", "Rd", "Ave", "Way", "Crescent",
                        "Gardens", "Terrace"],
        "uk_town": [("Leeds", "LS1 4AP"), ("Bristol", "BS1 5TR"), ("Manchester", "M1 2JB"), ("Cardiff", "CF10 1EP"),
                    ("Sheffield", "S1 2HE"), ("London", "NW1 6XE"), ("Glasgow", "G2 3BZ"), ("York", "YO1 7HH"),
                    ("Oxford", "OX1 3PQ"), ("Nottingham", "NG1 5FT")],
        "us_town": [("Chicago", "IL", "60614"), ("Boston", "MA", "02116"), ("Austin", "TX", "78701"),
                    ("Denver", "CO", "80202"), ("Seattle", "WA", "98101"), ("Portland", "OR", "97205")],
        "domain": ["gmail.com", "outlook.com", "yahoo.co.uk", "example.com", "mail.acme-corp.co.uk", "protonmail.com",
                   "hotmail.com", "btinternet.com", "company.org"],
        "company": ["Nvidia", "Apple", "Barclays", "Siemens", "Toyota", "Shell", "Unilever", "Microsoft", "Tesla",
                    "HSBC", "Pfizer", "Nestle", "Amazon", "Intel", "Rio Tinto", "Goldman Sachs", "Morgan Stanley",
                    "BP", "Vodafone", "Airbus"],
        "ticker": ["NVDA", "AAPL", "BARC.L", "SIE.DE", "7203.T", "SHEL", "ULVR.L", "MSFT", "TSLA", "HSBA.L", "PFE",
                   "AMZN", "INTC", "RIO.L", "GS", "MS", "BP.L", "VOD.L", "AIR.PA"],
        "agent": ["Tom", "Megan", "Ravi", "Lucy", "Marco", "Ellie"],
        "iban_countries": ["GB", "DE", "FR", "NL", "ES", "IE"],
    },
    "heldout": {
        "first": ["Rebecca", "Connor", "Ananya", "Wojciech", "Zainab", "Finn", "Xiu", "Diego", "Leila", "Harry",
                  "Amelie", "Samuel", "Chidi", "Matthias", "Valentina", "Kenji", "Ruth", "Omar", "Astrid", "Yaw",
                  "Irina", "Declan", "Samira", "Noah", "Emre", "Bethany", "Santiago", "Aoife", "Vikram", "Maya"],
        "last": ["Fitzgerald", "Sharma", "Wiśniewski", "Tran", "Eze", "Becker", "Ramirez", "Wong", "Doyle",
                 "Hoffmann", "Rahman", "Ferrari", "Karlsson", "Boateng", "Lefebvre", "Yamamoto", "Byrne", "Sokolova",
                 "Ashworth", "Kearney", "Silva", "Nilsson", "Khoury", "Horvat", "Quinn", "Gill", "Girard", "Nwosu"],
        "city": ["Birmingham", "Newcastle", "Nottingham", "Aberdeen", "Swansea", "Porto", "Valencia", "Hamburg",
                 "Philadelphia", "Atlanta", "Montreal", "Cork", "Inverness", "Brighton", "Phoenix", "Minneapolis",
                 "Utrecht", "Marseille", "Turin", "Gdansk", "Calgary", "Derry"],
        "region": ["Lancashire", "Saxony", "Quebec", "Florida", "Andalusia", "Cornwall", "Kent"],
        "country": ["France", "Sweden", "Greece", "Australia", "Norway", "Austria", "Kenya", "Chile", "Vietnam",
                    "Turkey", "Egypt"],
        "street": ["Mill Hill", "Orchard", "Chapel", "School", "North", "Windsor", "Highfield", "Manor", "Willow",
                   "Springfield", "Grange", "Albert", "Riverside", "Cedar"],
        "street_type": ["Street", "Road", "Lane", "Avenue", "Place", "Grove", "Rd.", "St.", "Blvd", "Court", "Mews",
                        "Parade"],
        "uk_town": [("Birmingham", "B3 2PW"), ("Newcastle", "NE1 4XF"), ("Brighton", "BN1 1AE"),
                    ("Aberdeen", "AB10 1YP"), ("Swansea", "SA1 3SN"), ("Norwich", "NR2 1TJ"), ("Exeter", "EX1 1GE"),
                    ("Reading", "RG1 8DB"), ("London", "SW1A 1AA")],
        "us_town": [("Philadelphia", "PA", "19103"), ("Atlanta", "GA", "30303"), ("Phoenix", "AZ", "85004"),
                    ("Minneapolis", "MN", "55401"), ("Miami", "FL", "33131"), ("Columbus", "OH", "43215")],
        "domain": ["icloud.com", "live.co.uk", "aol.com", "sky.com", "fastmail.fm", "uni.ac.uk", "firm-legal.com",
                   "web.de", "orange.fr"],
        "company": ["AstraZeneca", "Samsung", "Lloyds", "BASF", "Honda", "Glencore", "Diageo", "Alphabet", "Ford",
                    "Santander", "Novartis", "Danone", "Netflix", "AMD", "BHP", "JPMorgan", "Wells Fargo",
                    "Rolls-Royce", "Tesco", "Volkswagen"],
        "ticker": ["AZN", "005930.KS", "LLOY.L", "BAS.DE", "7267.T", "GLEN.L", "DGE.L", "GOOGL", "F", "SAN.MC",
                   "NOVN.SW", "BN.PA", "NFLX", "AMD", "BHP", "JPM", "WFC", "RR.L", "TSCO.L", "VOW3.DE"],
        "agent": ["Dan", "Hollie", "Sanjay", "Kate", "Pedro", "Alice"],
        "iban_countries": ["GB", "DE", "FR", "IT", "BE", "CH", "PL"],
    },
}

# --------------------------------------------------------------------------------------------------------------------
# Value generators: each returns the surface text of one value
# --------------------------------------------------------------------------------------------------------------------


def luhn_digit(payload: str) -> str:
    total = 0
    for position, char in enumerate(reversed(payload)):
        value = int(char) * (2 if position % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str((10 - total % 10) % 10)


def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def with_zero_width(rng: random.Random, text: str) -> str:
    """Insert a format character at two places inside ``text`` (never first or last)."""
    chars = list(text)
    for _ in range(2):
        position = rng.randrange(1, len(chars))
        chars.insert(position, rng.choice([ZWSP, ZWNJ, WJ, SHY]))
    return "".join(chars)


def card(rng: random.Random) -> str:
    network = rng.choice(["visa", "visa", "mc", "mc", "amex", "discover"])
    if network == "amex":
        number = rng.choice(["34", "37"]) + digits(rng, 12)
        number += luhn_digit(number)
        groups = [number[:4], number[4:10], number[10:]]
    else:
        prefix = {"visa": "4", "mc": rng.choice(["51", "52", "53", "54", "55", "2221", "2720"]),
                  "discover": "6011"}[network]
        number = prefix + digits(rng, 15 - len(prefix))
        number += luhn_digit(number)
        groups = [number[i: i + 4] for i in range(0, 16, 4)]
    style = rng.choice(["space", "space", "double", "dash", "dot", "compact", "fullwidth", "zw", "endash"])
    if style == "double":
        return "  ".join(groups)
    if style == "dash":
        return "-".join(groups)
    if style == "endash":
        return EN_DASH.join(groups)
    if style == "dot":
        return ".".join(groups)
    if style == "compact":
        return number
    if style == "fullwidth":
        return " ".join(groups).translate(FULLWIDTH)
    if style == "zw":
        return with_zero_width(rng, " ".join(groups))
    return " ".join(groups)


IBAN_BBAN = {  # (length of the BBAN, how to make it)
    "GB": lambda r: "".join(r.choice(string.ascii_uppercase) for _ in range(4)) + digits(r, 14),
    "DE": lambda r: digits(r, 18),
    "FR": lambda r: digits(r, 10) + "".join(r.choice(string.ascii_uppercase + string.digits) for _ in range(11))
    + digits(r, 2),
    "NL": lambda r: "".join(r.choice(string.ascii_uppercase) for _ in range(4)) + digits(r, 10),
    "ES": lambda r: digits(r, 20),
    "IE": lambda r: "".join(r.choice(string.ascii_uppercase) for _ in range(4)) + digits(r, 14),
    "IT": lambda r: r.choice(string.ascii_uppercase) + digits(r, 10)
    + "".join(r.choice(string.ascii_uppercase + string.digits) for _ in range(12)),
    "BE": lambda r: digits(r, 12),
    "CH": lambda r: digits(r, 5) + "".join(r.choice(string.ascii_uppercase + string.digits) for _ in range(12)),
    "PL": lambda r: digits(r, 24),
}


def iban(rng: random.Random, countries: list[str]) -> str:
    country = rng.choice(countries)
    bban = IBAN_BBAN[country](rng)
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    compact = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    printed = " ".join(compact[i: i + 4] for i in range(0, len(compact), 4))
    style = rng.choice(["printed", "printed", "compact", "lower", "lower_printed", "dashed", "dashed_lower", "double"])
    return {"printed": printed, "compact": compact, "lower": compact.lower(), "lower_printed": printed.lower(),
            "dashed": printed.replace(" ", "-"), "dashed_lower": printed.replace(" ", "-").lower(),
            "double": printed.replace(" ", "  ")}[style]


def ssn(rng: random.Random, bare_ok: bool) -> str:
    area = rng.choice([n for n in range(1, 900) if n != 666])
    number = f"{area:03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
    styles = ["dash", "dash", "space", "endash", "emdash"] + (["bare", "bare"] if bare_ok else [])
    style = rng.choice(styles)
    a, b, c = number[:3], number[3:5], number[5:]
    return {"dash": f"{a}-{b}-{c}", "space": f"{a} {b} {c}", "endash": f"{a}{EN_DASH}{b}{EN_DASH}{c}",
            "emdash": f"{a}{EM_DASH}{b}{EM_DASH}{c}", "bare": number}[style]


NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"


def nino(rng: random.Random) -> str:
    while True:
        prefix = rng.choice(NINO_FIRST) + rng.choice(NINO_SECOND)
        if prefix not in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
            break
    body = digits(rng, 6)
    suffix = rng.choice("ABCD")
    style = rng.choice(["spaced", "compact", "lower", "spaced_lower", "dashed"])
    spaced = f"{prefix} {body[:2]} {body[2:4]} {body[4:]} {suffix}"
    return {"spaced": spaced, "compact": f"{prefix}{body}{suffix}", "lower": f"{prefix}{body}{suffix}".lower(),
            "spaced_lower": spaced.lower(), "dashed": spaced.replace(" ", "-")}[style]


def phone(rng: random.Random, bare_ok: bool = True) -> str:
    uk_mobile = "7700 9" + digits(rng, 5)
    london = "20 7946 0" + digits(rng, 3)
    us = f"{rng.choice(['202', '312', '415', '617', '646', '305'])} 555 01{digits(rng, 2)}"
    a, b, c = us.split()
    options = [
        f"+44 {london}", f"0{london}", f"0{uk_mobile}", f"+44 {uk_mobile}", f"+44 (0){london}",
        f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"+1 {a} {b} {c}", f"{a}.{b}.{c}", f"1-800-555-01{digits(rng, 2)}",
        f"+1-{a}-{b}-{c}", f"+33 1 {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)}",
        f"+49 30 {digits(rng, 6)}", f"0{london}".replace(" ", "-"), f"+353 1 {digits(rng, 3)} {digits(rng, 4)}",
        f"0{london}".translate(FULLWIDTH), f"{a}{EN_DASH}{b}{EN_DASH}{c}",
    ]
    if bare_ok:
        options += [("0" + uk_mobile).replace(" ", ""), ("0" + london).replace(" ", "")]
    return rng.choice(options)


def email(rng: random.Random, pool: dict, first: str | None = None, last: str | None = None) -> str:
    first = (first or rng.choice(pool["first"])).lower()
    last = re.sub(r"[^a-z]", "", (last or rng.choice(pool["last"])).lower().replace("ś", "s"))
    domain = rng.choice(pool["domain"])
    local = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}{rng.randint(1, 99)}",
                        f"{first}{rng.randint(1970, 2005)}", f"{first}.{last}+bank", f"{last}.{first[0]}"])
    style = rng.choice(["plain", "plain", "plain", "upper", "spelled", "paren", "bracket", "mixed_spelled"])
    if style == "upper":
        return f"{local}@{domain}".upper()
    if style == "spelled":
        return f"{local.replace('.', ' dot ')} at {domain.replace('.', ' dot ')}"
    if style == "paren":
        return f"{local}(at){domain.replace('.', '(dot)')}"
    if style == "bracket":
        return f"{local} [at] {domain.replace('.', ' [dot] ')}"
    if style == "mixed_spelled":
        return f"{local} AT {domain.replace('.', ' DOT ')}"
    return f"{local}@{domain}"


def ipv4(rng: random.Random) -> str:
    return rng.choice([
        f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}", f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
        f"{rng.randint(1, 254)}", f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        f"{rng.randint(23, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
    ])


def ipv6(rng: random.Random) -> str:
    def h() -> str:
        return f"{rng.randint(0, 0xFFFF):x}"
    return rng.choice([
        f"2001:db8:{h()}:{h()}::{h()}", f"fe80::{h()}:{h()}:{h()}:{h()}", ":".join(h() for _ in range(8)),
        f"2a02:c7f:{h()}:{h()}:{h()}:{h()}:{h()}:{h()}", "::1",
        f"2001:0db8:85a3:0000:0000:8a2e:0370:{rng.randint(0x1000, 0xFFFF):04x}",
        f"::ffff:192.0.2.{rng.randint(1, 254)}",
    ])


MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


def ordinal(n: int) -> str:
    return f"{n}{'th' if 11 <= n % 100 <= 13 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def dob(rng: random.Random) -> str:
    year, month, day = rng.randint(1941, 2006), rng.randint(1, 12), rng.randint(1, 28)
    m = MONTHS[month - 1]
    return rng.choice([
        f"{day:02d}/{month:02d}/{year}", f"{month}/{day}/{year}", f"{year}-{month:02d}-{day:02d}",
        f"{day} {m} {year}", f"{m} {day}, {year}", f"{ordinal(day)} of {m} {year}", f"{day:02d}.{month:02d}.{year}",
        f"{day:02d}-{month:02d}-{str(year)[2:]}", f"{m[:3]} {day} {year}", f"{ordinal(day)} {m} {year}",
        f"{day}{EN_DASH}{month}{EN_DASH}{year}",
    ])


def account(rng: random.Random, kind: str = "any") -> str:
    kinds = {
        "account": [digits(rng, 8), digits(rng, 10), f"{digits(rng, 4)}-{digits(rng, 4)}-{digits(rng, 2)}",
                    f"{digits(rng, 4)} {digits(rng, 4)}", f"ACC-{digits(rng, 7)}", "00" + digits(rng, 8)],
        "customer": [f"CUST-{digits(rng, 6)}", f"C-{digits(rng, 7)}", f"CU{digits(rng, 8)}", digits(rng, 9),
                     f"cust-{digits(rng, 6)}", f"{digits(rng, 3)}-{digits(rng, 3)}-{digits(rng, 3)}"],
        "member": [f"M{digits(rng, 7)}", f"MBR-{digits(rng, 6)}", digits(rng, 7)],
        "policy": [f"POL-{rng.randint(2015, 2024)}-{digits(rng, 6)}", f"PL{digits(rng, 8)}"],
        "sort": [f"{rng.randint(10, 99)}-{rng.randint(10, 99)}-{rng.randint(10, 99)}"],
    }
    if kind == "any":
        kind = rng.choice(["account", "customer", "member"])
    return rng.choice(kinds[kind])


def person(rng: random.Random, pool: dict, style: str = "full") -> str:
    first, last = rng.choice(pool["first"]), rng.choice(pool["last"])
    if style == "first":
        return first
    if style == "last":
        return last
    if style == "upper":
        return f"{first} {last}".upper()
    return f"{first} {last}"


def address(rng: random.Random, pool: dict) -> str:
    number = rng.choice([str(rng.randint(1, 240)), f"{rng.randint(1, 99)}{rng.choice('AB')}",
                         str(rng.randint(1000, 9800))])
    street = f"{rng.choice(pool['street'])} {rng.choice(pool['street_type'])}"
    style = rng.choice(["uk", "uk", "uk_flat", "us", "us_apt", "street_only", "uk_lower", "uk_nocomma"])
    if style.startswith("uk"):
        town, postcode = rng.choice(pool["uk_town"])
        if style == "uk_flat":
            return f"Flat {rng.randint(1, 30)}, {number} {street}, {town} {postcode}"
        if style == "uk_lower":
            return f"{number} {street}, {town} {postcode}".lower()
        if style == "uk_nocomma":
            return f"{number} {street} {town} {postcode}"
        return f"{number} {street}, {town}, {postcode}"
    if style.startswith("us"):
        town, state, zipcode = rng.choice(pool["us_town"])
        unit = f", Apt {rng.randint(1, 40)}{rng.choice('ABCD')}" if style == "us_apt" else ""
        return f"{number} {street}{unit}, {town}, {state} {zipcode}"
    return f"{number} {street}"


def postcode(rng: random.Random, pool: dict) -> str:
    code = rng.choice(pool["uk_town"])[1]
    return code.lower() if rng.random() < 0.25 else code


def location(rng: random.Random, pool: dict) -> str:
    return rng.choice(pool["city"] * 2 + pool["region"] + pool["country"])


def url_credentials(rng: random.Random) -> tuple[str, str, str]:
    """(before, credentials, after) of a URL with a user name and password."""
    user = rng.choice(["admin", "svc_report", "jdoe", "etl", "backup", "ops"])
    password = rng.choice(["hunter2", "S3cr3t!", "p4ssw0rd", "Tr0ub4dor", "letmein99", "Xk9#qL2"])
    host = rng.choice(["db.internal", "db-primary.corp", "mail.example.com", "ftp.acme-corp.co.uk", "cache.local"])
    scheme = rng.choice(["postgres", "https", "ftp", "mysql", "redis", "amqp"])
    port = rng.choice(["", ":5432", ":21", ":6379", ":8443"])
    return f"{scheme}://", f"{user}:{password}", f"@{host}{port}/{rng.choice(['app', 'reports', 'x', ''])}"


# --------------------------------------------------------------------------------------------------------------------
# Look-alikes (never PII)
# --------------------------------------------------------------------------------------------------------------------


def lookalike(rng: random.Random, pool: dict, name: str) -> str:
    year = rng.choice([2022, 2023, 2024, 2025])
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    makers = {
        "version": lambda: rng.choice([
            f"{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(1, 40)}",
            f"v{rng.randint(1, 5)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
            f"{rng.randint(10, 17)}.{rng.randint(0, 6)}.{rng.randint(0, 3)}",
            f"10.0.{rng.randint(19041, 22631)}.{rng.randint(100, 3000)}"]),
        "section": lambda: rng.choice([
            f"{rng.randint(1, 12)}.{rng.randint(1, 9)}.{rng.randint(1, 9)}.{rng.randint(1, 9)}",
            f"{rng.randint(1, 30)}.{rng.randint(1, 9)}",
            f"{rng.randint(1, 9)}.{rng.randint(1, 9)}.{rng.randint(1, 9)}"]),
        "order": lambda: rng.choice([f"{digits(rng, 3)}-{digits(rng, 3)}-{digits(rng, 4)}", f"#{digits(rng, 8)}",
                                     f"A{digits(rng, 7)}", f"ORD-{year}-{digits(rng, 6)}", digits(rng, 10),
                                     f"{digits(rng, 3)}-{digits(rng, 7)}-{digits(rng, 7)}"]),
        "part": lambda: rng.choice([
            f"{digits(rng, 4)}-{digits(rng, 4)}-{digits(rng, 2)}",
            f"{digits(rng, 2)}-{digits(rng, 4)}-{digits(rng, 3)}",
            f"PN-{digits(rng, 6)}", f"{digits(rng, 3)}-{digits(rng, 4)}", f"X{digits(rng, 5)}-{digits(rng, 2)}"]),
        "tracking": lambda: rng.choice([f"1Z{digits(rng, 3)}AA{digits(rng, 10)}", f"JD{digits(rng, 18)}",
                                        f"{digits(rng, 12)}"]),
        "ticker": lambda: rng.choice(pool["ticker"]),
        "company": lambda: rng.choice(pool["company"]),
        "isin": lambda: rng.choice(["US0378331005", "GB0002634946", "DE0007164600", "US67066G1040", "FR0000120271",
                                    "JP3633400001", "GB00BH4HKS39", "CH0012005267", "US5949181045", "NL0010273215"]),
        "cusip": lambda: rng.choice(["037833100", "67066G104", "594918104", "88160R101", "023135106", "46625H100",
                                     "38141G104", "458140100"]),
        "price": lambda: rng.choice([f"${rng.randint(5, 990)}.{digits(rng, 2)}",
                                     f"£{rng.randint(1, 99)},{digits(rng, 3)}.{digits(rng, 2)}",
                                     f"€{rng.randint(1, 500)}.{digits(rng, 2)}bn", f"{rng.randint(100, 9999)}p",
                                     f"USD {rng.randint(1, 90)},{digits(rng, 3)},{digits(rng, 3)}"]),
        "pct": lambda: rng.choice([f"{rng.randint(0, 30)}.{rng.randint(0, 99)}%",
                                   f"-{rng.randint(0, 9)}.{digits(rng, 2)}%",
                                   f"{rng.randint(1, 400)} basis points", f"{rng.randint(1, 99)} bps"]),
        "date": lambda: rng.choice([f"{year}-{month:02d}-{day:02d}", f"{day:02d}/{month:02d}/{year}",
                                    f"{MONTHS[month - 1]} {day}, {year}", f"{day} {MONTHS[month - 1][:3]} {year}",
                                    f"{month}/{day}/{str(year)[2:]}", f"Q{rng.randint(1, 4)} {year}", f"FY{year}"]),
        "qty": lambda: rng.choice([f"{rng.randint(1, 999)},{digits(rng, 3)}",
                                   f"{rng.randint(1, 99)},{digits(rng, 3)},{digits(rng, 3)}",
                                   f"{rng.randint(1, 50)}.{rng.randint(1, 9)} million", f"{rng.randint(2, 500)}"]),
        "index": lambda: rng.choice([f"{rng.randint(30, 42)},{digits(rng, 3)}.{digits(rng, 2)}",
                                     f"{rng.randint(4000, 8000)}.{digits(rng, 2)}",
                                     f"{rng.randint(14000, 19000)}.{digits(rng, 2)}"]),
        "time": lambda: rng.choice([f"{rng.randint(7, 18)}:{rng.randint(0, 59):02d}",
                                    f"{rng.randint(1, 12)}:{rng.randint(0, 59):02d} pm",
                                    f"{rng.randint(7, 18)}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} GMT"]),
        "ip_like": lambda: rng.choice([
            f"{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 99)}"]),
        "lei": lambda: rng.choice(["5493001KJTIIGC8Y1R12", "213800LBQA1Y9L22JB70", "HWUPKR0MPOU8FGXBT394"]),
        "imei": lambda: rng.choice(["356938035643809", "490154203237518", "353918051234563"]),
        "isbn": lambda: rng.choice(["978-3-16-148410-0", "978-0-306-40615-7", "979-10-90636-07-1"]),
        "app": lambda: rng.choice(["Firefox", "Chrome", "Outlook", "Gmail", "Excel", "Windows 11", "Android", "iOS",
                                   "Google Drive", "WhatsApp", "Safari", "Teams"]),
        "error": lambda: rng.choice([
            f"0x{digits(rng, 8)}", f"E{digits(rng, 3)}", f"{rng.randint(400, 599)}",
            f"{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(1, 99)}"]),
    }
    return makers[name]()


# --------------------------------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------------------------------
# Slots in upper case are PII ({PERSON}, {EMAIL}, ...; a suffix after ':' picks a variant); slots in lower case are
# look-alikes ({order}, {version}, ...). {FIRST} is a first name, {LAST} a surname, {AGENT} an agent's first name
# (all PERSON); {POSTCODE} and {ADDRESS} are ADDRESS; {ACCOUNT:customer} etc. pick the kind of number.

TEMPLATES = {
    "dev": {
        "support": [
            "Hi, my name is {PERSON} and my card {CARD} was charged twice for order {order}.",
            "Hello {AGENT}, I can't log in. My email is {EMAIL} and my phone number is {PHONE}.",
            "My account number is {ACCOUNT:account} and the sort code is {ACCOUNT:sort}. "
            "Can you check the last payment?",
            "Please update my address to {ADDRESS}, I moved last week.",
            "hi there, this is {PERSON} - please call me back on {PHONE} after {time}",
            "I need to verify my identity: DOB {DOB}, SSN {SSN}.",
            "For the tax form: social security number {SSN:bare}, date of birth {DOB}.",
            "My NI number is {NINO} and my employer says it's wrong on the payslip.",
            "Refund should go to IBAN {IBAN} please, reference order {order}.",
            "The app crashes on version {version} when I open my statement. Logged in from {IP}.",
            "We saw a login from IP {IP} at {time} that wasn't me! Customer ID {ACCOUNT:customer}.",
            "Could you send the invoice to {EMAIL}? Thanks, {FIRST}",
            "I was born on {DOB} and the system says I'm under 18, which is wrong.",
            "Spoke to {AGENT} yesterday about part {part}, she said to email {EMAIL}.",
            "My husband {PERSON} is the second cardholder, his number is {PHONE}.",
            "Customer {PERSON} (cust id {ACCOUNT:customer}) reports card {CARD} declined in {LOCATION}.",
            "I live in {LOCATION} and the delivery to {ADDRESS} never arrived. Tracking {tracking}.",
            "Hello, I'm travelling to {LOCATION} next week, please don't block card {CARD}.",
            "My postcode is {POSTCODE} but the form keeps rejecting it.",
            "Server logs show {IP} and {IPV6} hitting the API on build {version}.",
            "The connection string was {URLCRED} - I've rotated it since, sorry!",
            "Can you confirm the direct debit from account {ACCOUNT:account}? My mobile is {PHONE}.",
            "Ticket note: caller {PERSON}, DOB {DOB}, verified via NINO {NINO}.",
            "Dear {AGENT},\nPlease close my account {ACCOUNT:account}. Send the balance to {IBAN}.\nRegards,\n{PERSON}",
            "URGENT: someone used my card {CARD} at {time}. I'm {PERSON}, you can reach me at {EMAIL}.",
            "my name is {PERSON:lower} and my email is {EMAIL}",
            "Member number {ACCOUNT:member}, I changed my phone to {PHONE} and email to {EMAIL}.",
            "Please send the replacement card to {ADDRESS} rather than my old flat.",
            "My date of birth is {DOB} and my postcode {POSTCODE}.",
            "I called from {PHONE} but got cut off. It's about policy {ACCOUNT:policy}.",
            "Can you add {PERSON} as a trusted contact? Her email is {EMAIL}, phone {PHONE}.",
            "Order {order} was delivered to {ADDRESS} but I'm in {LOCATION} this month.",
            "DOB: {DOB}\nNI: {NINO}\nMobile: {PHONE}\nEmail: {EMAIL}",
            "Hi {AGENT}, following up on case {order}. The transfer to {IBAN} still hasn't arrived.",
            "the router at home is {IP} and my laptop shows {IPV6}, firmware {version}.",
            "Payment of {price} to card ending in the number {CARD} failed, error code {section}.",
            "Thanks {AGENT}! Also my wife {PERSON} will call from {PHONE}.",
            "Login email {EMAIL}, customer number {ACCOUNT:customer}, born {DOB}.",
            "I'm {PERSON} from {LOCATION}; my account {ACCOUNT:account} shows a charge of {price} I don't recognise.",
            "Please don't call {PHONE}, use {PHONE} instead. Cheers, {PERSON}",
            "hi im {PERSON:lower}, locked out of online banking since the {app} update",
            "I spoke with someone called {FIRST} on the phone, he said the refund would take {qty} days.",
            "Can you ask for {AGENT} to call me? My number's {PHONE}.",
            "We've just moved to {LOCATION} - new address is {ADDRESS}.",
            "Please freeze card {CARD}, I lost my wallet in {LOCATION} this morning.",
            "Could you update the email on acct {ACCOUNT:account} to {EMAIL}? Thanks, {FIRST}",
            "Opened the app in {app}, got error {error}, then a login alert from {IP}.",
            "{PERSON}, DOB {DOB}, called about joint account {ACCOUNT:account} with {PERSON}.",
            "Is it safe to send my social security number ({SSN}) by chat?",
            "Hello, {FIRST} here again. The courier says postcode {POSTCODE} is invalid.",
            "Customer says she was born on {DOB} and lives near {LOCATION}.",
            "Surname: {LAST}. First name: {FIRST}. Date of birth: {DOB}.",
            "For the security question my mother's maiden name is {LAST}.",
            "Sorted now, thanks for the quick reply! - {FIRST}",
            "Please call back after {time} on {PHONE}.\n{PERSON}",
            "Can {PERSON} sign as a witness for the mortgage on {ADDRESS}?",
        ],
        "finance": [
            "{company} ({ticker}) rose {pct} to {price} after CEO {PERSON} raised guidance for {date}.",
            "For media enquiries contact {PERSON} on {PHONE} or {EMAIL}.",
            "Analyst {PERSON} at {company} cut the target to {price}; shares fell {pct} in {LOCATION}.",
            "Trade confirmation: client {PERSON}, account {ACCOUNT:account}, bought {qty} {ticker} at {price} "
            "on {date}.",
            "{company} will open a new office in {LOCATION}, said spokesperson {PERSON}.",
            "Investor relations: {PERSON}, {EMAIL}, {PHONE}.",
            "Wire instructions for the settlement: IBAN {IBAN}, reference {order}.",
            "KYC refresh for {PERSON}: DOB {DOB}, SSN {SSN}, residential address {ADDRESS}.",
            "The fund manager {PERSON} told reporters in {LOCATION} that {company} remains a core holding.",
            "Please wire the margin call to account {ACCOUNT:account}; questions to {EMAIL}.",
            "{PERSON}, head of research, expects {pct} growth; contact her at {EMAIL}.",
            "Our desk in {LOCATION} can be reached on {PHONE}. ISIN {isin}, trade date {date}.",
            "Client onboarding: name {PERSON}, born {DOB}, NINO {NINO}, email {EMAIL}.",
            "Shares of {company} hit {price} in {LOCATION} after {PERSON} was named chief financial officer.",
            "Compliance flagged a login to the trading portal from {IP} for customer {ACCOUNT:customer}.",
            "Reminder: the broker statement for account {ACCOUNT:account} goes to {ADDRESS}.",
            "Payment card {CARD} on file for subscription to the research service, billed {price}.",
            "{PERSON} ({EMAIL}) asked to move the holdings of {ticker} to IBAN {IBAN}.",
            "{PERSON} said {company} would cut {qty} jobs; the stock fell {pct} in {LOCATION}.",
            "\"We see upside to {price},\" said {PERSON}, an analyst at {company}, in a note from {LOCATION}.",
            "Private client {PERSON} (client no. {ACCOUNT:customer}) wants statements e-mailed to {EMAIL}.",
            "Beneficiary: {PERSON}, IBAN {IBAN}, address {ADDRESS}.",
            "Desk contacts - {PERSON}: {PHONE}; {PERSON}: {PHONE}.",
            "{company} named {PERSON} chief executive, effective {date}; {ticker} rose {pct}.",
        ],
        "clean_support": [
            "My order {order} hasn't arrived yet, the tracking number is {tracking}.",
            "The app crashes after updating to version {version}. Any fix?",
            "Firmware {version} bricked my card reader, see section {section} of the manual.",
            "I was charged {price} instead of {price} on {date} for part no. {part}.",
            "Can you check ticket {order}? It's been open since {date}.",
            "The installer for build {version} fails at step {section} on Windows.",
            "Order #{order} contains part {part} twice, I only ordered {qty}.",
            "Your website says {pct} off but the basket shows {price}.",
            "Return label for order {order}: parcel {tracking}, drop-off by {date}.",
            "Error code {section} appears when I try to pay {price}.",
            "Version {version} fixed it, thanks! Closing ticket {order}.",
            "Is part {part} compatible with model {part}? The spec sheet section {section} is unclear.",
            "I got an email about order {order} for {price}, but I ordered on {date}.",
            "The delivery slot at {time} on {date} is fine for order {order}.",
            "Refund of {price} for order {order} still pending after {qty} days.",
            "The {app} app shows error {error} after the update to {version}.",
            "Phone IMEI {imei} still blocked although order {order} was paid.",
            "Book ISBN {isbn} arrived damaged, order {order}, part {part}.",
            "Works in {app} but not in {app}; firmware {version}, update from {version} failed.",
        ],
        "clean_finance": [
            "{company} ({ticker}) closed at {price}, up {pct}, on volume of {qty} shares.",
            "ISIN {isin}, CUSIP {cusip}: coupon {pct}, trade date {date}, settlement T+2.",
            "The index ended at {index}, while {company} slipped {pct} to {price}.",
            "{company} reported Q3 revenue of {price}, {pct} above consensus; EPS {price}.",
            "Analysts expect {company} to announce a buyback of {qty} shares in {date}.",
            "{ticker} options: {qty} contracts traded, implied volatility {pct}.",
            "Bond yields rose {pct} after the central bank held rates; the 10-year closed at {pct}.",
            "{company} and {company} agreed a {price} merger, expected to close in {date}.",
            "Trade date {date}, settlement date {date}, {qty} units of {isin} at {price}.",
            "{company} shares fell {pct} to {price} at {time} after the profit warning.",
            "Our model rates {ticker} a buy with a target of {price}; see section {section} of the note.",
            "Order book update: {qty} shares of {ticker} bid at {price}, LEI {lei}.",
            "{company} raised its dividend by {pct} to {price} per share, payable on {date}.",
            "Futures pointed to a {pct} gain; {company} and {company} led the rally at {index}.",
            "The prospectus (section {section}) lists CUSIP {cusip} and ISIN {isin} for the notes.",
            "Morgan Stanley and Goldman Sachs cut {company} to neutral; shares fell {pct} to {price}.",
            "{company} guided {date} revenue to {price}, with a margin of {pct} and capex of {price}.",
            "Order {order} for {qty} {ticker} at {price} was filled at {time}; CUSIP {cusip}.",
        ],
    },
    "heldout": {
        "support": [
            "Good morning, {PERSON} here. I'd like to dispute a payment on the card {CARD}.",
            "You can get hold of me at {EMAIL} or ring {PHONE} any time before {time}.",
            "Where's my refund?? It was meant to land in {IBAN} days ago. Account holder: {PERSON}",
            "Bank details for the standing order - sort code {ACCOUNT:sort}, acct no. {ACCOUNT:account}.",
            "New delivery address: {ADDRESS}. Old one can be removed.",
            "For security: my d.o.b. is {DOB} and the last four of... actually here's the full SSN {SSN}",
            "Your colleague {AGENT} asked for my national insurance no, it is {NINO}.",
            "Hiya, the transfer from {IBAN} bounced back. Please advise. - {PERSON}",
            "Someone in {LOCATION} tried to use my card {CARD} - I've never been there!",
            "I keep getting locked out, my IP is {IP} if that helps. On app version {version}.",
            "client ref {ACCOUNT:customer} - change of phone to {PHONE} please",
            "Ms {LAST} called about her pension, policy number {ACCOUNT:policy}, callback on {PHONE}.",
            "i'm moving to {LOCATION} so pls update to {ADDRESS} from next month",
            "Sending a scan of my ID. Birthday {DOB}. SSN is {SSN:bare}.",
            "Could {PERSON} (my son) be added? His email: {EMAIL}",
            "Our VPN gateway {IP} and the IPv6 {IPV6} are both blocked by your firewall.",
            "The backup job uses {URLCRED} and it started failing on {date}.",
            "{PERSON}\n{ADDRESS}\nTel {PHONE}",
            "Member ID {ACCOUNT:member} - I'd like a paper statement sent to {ADDRESS}.",
            "Please email me the form at {EMAIL}. My National Insurance number is {NINO}. Ta, {FIRST}",
            "Agent notes: spoke with {PERSON} re card {CARD}; customer is in {LOCATION} until {date}.",
            "this is {PERSON:lower}, my d.o.b is {DOB}, I need to reset my PIN",
            "Postcode {POSTCODE}, house number {qty}. Why does the courier say it doesn't exist?",
            "Hey {AGENT}, can the money go to {IBAN} instead of my usual account {ACCOUNT:account}?",
            "I was born {DOB}, so the age check on your site is definitely wrong.",
            "Contact me on {PHONE} (mobile) or {PHONE} (work). {PERSON}",
            "Security question answers: DOB {DOB}, mother's maiden name {LAST}.",
            "Logged in from {IPV6} and got a 2FA code sent to {PHONE} that I never asked for.",
        ],
        "finance": [
            "Press contact: {PERSON}, tel. {PHONE}, e-mail {EMAIL}",
            "{PERSON}, who runs the {LOCATION} office of {company}, says margins will recover by {date}.",
            "Settlement instructions for client {ACCOUNT:customer}: pay {price} into {IBAN}.",
            "Account opening - applicant {PERSON}, date of birth {DOB}, SSN {SSN}, tel {PHONE}.",
            "Strategist {PERSON} sees {ticker} at {price} within a year, according to a note sent from {LOCATION}.",
            "Please direct analyst questions to {EMAIL}; our {LOCATION} team is on {PHONE}.",
            "{company} appointed {PERSON} as chair; the shares rose {pct} in {LOCATION} trading.",
            "Statement for account no. {ACCOUNT:account} mailed to {ADDRESS}.",
            "The portfolio manager, {PERSON}, was born on {DOB} and joined {company} in {date}.",
            "Suspicious login to client portal: user {EMAIL}, source address {IP}.",
            "Corporate card {CARD} was used for the {LOCATION} roadshow expenses ({price}).",
            "Beneficial owner: {PERSON}; registered address {ADDRESS}; NI {NINO}.",
        ],
        "clean_support": [
            "Parcel {tracking} shows delivered but I haven't got order {order}.",
            "After the {version} update the app logs me out every {qty} minutes.",
            "Chapter {section} of the warranty says part {part} is covered until {date}.",
            "Why was I billed {price} on {date}? My plan is {price} a month.",
            "Replacement part {part} for order {order}, please - the old one broke.",
            "The release notes for {version} mention a fix in section {section}, but it's still broken.",
            "Your promo code gave {pct} off on order {order}, not the advertised {pct}.",
            "Invoice {order} dated {date} lists {qty} units at {price}.",
            "Model {part} with firmware {version} keeps rebooting at {time}.",
            "I'd like to return order no. {order} ({price}) before {date}.",
            "Booking reference {order} for {date} at {time}, please confirm.",
            "Clause {section} of your terms contradicts the FAQ about refunds over {price}.",
        ],
        "clean_finance": [
            "{company} gained {pct} to {price} as {qty} shares changed hands before {time}.",
            "New issue: ISIN {isin}, CUSIP {cusip}, priced at {price} to yield {pct}.",
            "{ticker} slid {pct} while the benchmark held at {index}; trade date {date}.",
            "{company} posted adjusted EPS of {price} against a forecast of {price} for {date}.",
            "Block trade: {qty} {ticker} at {price} (trade date {date}, settles {date}).",
            "{company} cut its outlook, sending the stock down {pct}; peers {company} and {company} also fell.",
            "Rates desk: the 2-year moved {pct}, the curve steepened by {pct}.",
            "The note (paragraph {section}) values {company} at {price}, or {pct} upside.",
            "{company} says {qty} employees will move to the new platform in {date}.",
            "Fund flows: {price} into equity ETFs, {price} out of bonds; {ticker} led with {pct}.",
            "{company} ({ticker}) trades at {index} times earnings after a {pct} rally since {date}.",
            "CUSIP {cusip} / ISIN {isin}: redemption at {price} on {date}.",
        ],
    },
}

PII_SLOTS = {"PERSON", "FIRST", "LAST", "AGENT", "EMAIL", "PHONE", "CARD", "IBAN", "SSN", "NINO", "IP", "IPV6", "DOB",
             "ACCOUNT", "ADDRESS", "POSTCODE", "LOCATION", "URLCRED"}
SLOT_KIND = {"FIRST": "PERSON", "LAST": "PERSON", "AGENT": "PERSON", "IPV6": "IP", "POSTCODE": "ADDRESS",
             "URLCRED": "URL_CREDENTIALS"}
SLOT_RE = re.compile(r"\{([A-Za-z_0-9]+)(?::([a-z_]+))?\}")


@dataclass
class Message:
    text: str = ""
    spans: list[dict] = field(default_factory=list)

    def add(self, piece: str, kind: str | None = None) -> None:
        if kind:
            self.spans.append({"start": len(self.text), "end": len(self.text) + len(piece), "type": kind})
        self.text += piece


def pii_value(slot: str, variant: str | None, rng: random.Random, pool: dict) -> str:
    """A generated value for a PII slot (``variant``: the part after ':' in the template)."""
    makers = {
        "PERSON": lambda: person(rng, pool, "full") if variant != "lower" else person(rng, pool).lower(),
        "FIRST": lambda: person(rng, pool, "first"),
        "LAST": lambda: person(rng, pool, "last"),
        "AGENT": lambda: rng.choice(pool["agent"]),
        "EMAIL": lambda: email(rng, pool),
        "PHONE": lambda: phone(rng),
        "CARD": lambda: card(rng),
        "IBAN": lambda: iban(rng, pool["iban_countries"]),
        "SSN": lambda: ssn(rng, bare_ok=True) if variant != "bare" else ssn(rng, True).replace("-", ""),
        "NINO": lambda: nino(rng),
        "IP": lambda: ipv4(rng) if rng.random() < 0.75 else ipv6(rng),
        "IPV6": lambda: ipv6(rng),
        "DOB": lambda: dob(rng),
        "ACCOUNT": lambda: account(rng, variant or "any"),
        "ADDRESS": lambda: address(rng, pool),
        "POSTCODE": lambda: postcode(rng, pool),
        "LOCATION": lambda: location(rng, pool),
    }
    return makers[slot]()


def fill(template: str, rng: random.Random, pool: dict) -> Message:
    message = Message()
    cursor = 0
    for match in SLOT_RE.finditer(template):
        message.add(template[cursor: match.start()])
        cursor = match.end()
        slot, variant = match.group(1), match.group(2)
        if slot not in PII_SLOTS:
            message.add(lookalike(rng, pool, slot))
            continue
        kind = SLOT_KIND.get(slot, slot)
        if slot == "URLCRED":
            before, credentials, after = url_credentials(rng)
            message.add(before)
            message.add(credentials, kind)
            message.add(after)
            continue
        value = pii_value(slot, variant, rng, pool)
        if slot == "SSN" and variant == "bare":
            value = re.sub(r"[^0-9]", "", value)
        message.add(value, kind)
    message.add(template[cursor:])
    return message


def build(part: str, rng: random.Random, copies: dict[str, int]) -> list[dict]:
    pool = POOLS[part]
    rows = []
    for group, templates in TEMPLATES[part].items():
        source = "support" if "support" in group else "finance"
        for template in templates:
            for _ in range(copies[group]):
                message = fill(template, rng, pool)
                pii = bool(message.spans)
                if group.startswith("clean"):
                    assert not pii, template
                rows.append({"text": message.text, "spans": message.spans, "source": source, "pii": pii})
    rng.shuffle(rows)
    return rows


def main() -> None:
    copies = {
        "dev": {"support": 8, "finance": 8, "clean_support": 5, "clean_finance": 5},
        "heldout": {"support": 8, "finance": 8, "clean_support": 5, "clean_finance": 5},
    }
    for index, part in enumerate(("dev", "heldout")):
        rows = build(part, random.Random(SEED + index), copies[part])
        with open(HERE / f"{part}.jsonl", "w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        kinds: dict[str, int] = {}
        for row in rows:
            for span in row["spans"]:
                kinds[span["type"]] = kinds.get(span["type"], 0) + 1
        print(part, len(rows), "messages,", sum(not r["pii"] for r in rows), "without PII,",
              sum(kinds.values()), "spans", dict(sorted(kinds.items())))


if __name__ == "__main__":
    main()
