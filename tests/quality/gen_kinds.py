#!/usr/bin/env python3
"""Generates the kinds corpus from the hand-written banks, deterministically:

    corpus/kinds.jsonl          from bank_train.py   (rules may be tuned against it)
    corpus/kinds_heldout.jsonl  from bank_heldout.py (never used for tuning)

Each line is {"text", "labels", "channel", "ordinary", "kind"} and, for ordinary replies,
"sector". Positive kinds: social_proof, urgency, confirmshaming, sneaking, sms_lure, pii_phone,
pii_ssn, pii_email_idn. Negative kinds (labels []): the honest counterpart of each positive kind
(<kind>_honest), template (messages with placeholders) and ordinary (replies from many sectors).

The banks hold the phrasings; this script only fills slots (names, numbers, prices, phone numbers
in national formats, internationalised e-mail addresses) and frames a phrasing the way it appears
on each channel (an SMS with a sender and an opt-out, an e-mail with a greeting, a button row in
an app). Python 3 standard library only."""
import json
import random
import re
import sys
import os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bank_heldout  # noqa: E402
import bank_train  # noqa: E402

NAMES = ["Sarah", "Priya", "Jordan", "Mei", "Oluwaseun", "Lucía", "Tomasz", "Aisha", "Liam",
         "Noor", "Hannah", "Diego", "Yuki", "Fatima", "Chris", "Zoë", "Ahmed", "Grace", "Mateo",
         "Ingrid", "Kenji", "Eleni", "Yael", "Wei", "Siobhan", "Rahul", "Amara", "Bronwyn"]
AGENTS = ["Alex", "Dana", "Ravi", "Beth", "Kofi", "Marta", "Jin", "Ellie", "Sipho", "Niamh"]
CITIES = ["Leeds", "Manchester", "Bristol", "Glasgow", "Cardiff", "Belfast", "Dublin", "Austin",
          "Denver", "Toronto", "Melbourne", "Perth", "Auckland", "Pune", "Cape Town", "Boston",
          "Brighton", "Cork", "Vancouver", "Adelaide"]
PRODUCTS = ["air fryer", "rain jacket", "standing desk", "robot vacuum", "espresso machine",
            "weighted blanket", "smart watch", "duvet set", "trail shoes", "baby monitor",
            "cordless drill", "yoga mat"]
THINGS = ["room", "flight", "item", "deal", "apartment", "tour", "seat", "listing"]
BRANDS = ["Brightwave", "Northwind", "Octopia", "Fernley", "Lumio", "Kestrel"]
CATEGORIES = ["Home & Kitchen", "Garden", "Toys", "Outdoor", "Beauty", "Electronics"]
EVENTS = ["Black Friday", "summer", "Boxing Day", "spring", "festival", "Cyber Week"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
SHOPS = ["Tesco", "Walmart", "Argos", "Target", "Amazon", "Woolworths", "Boots", "Currys"]
BANKS = ["Barclays", "HSBC", "Chase", "NatWest", "Lloyds", "Wells Fargo", "ANZ", "Monzo"]
GADGETS = ["iPhone 15", "PS5", "Galaxy S24", "Dyson Airwrap", "iPad", "smart TV"]
RESORTS = ["Tenerife", "Cancún", "the Maldives", "Bali", "Orlando", "Ibiza"]
MONTHS = ["January", "March", "June", "September", "October", "December"]
URLS = ["bit.ly/3xYz9Q", "https://royalmail-redelivery.info/pay", "tinyurl.com/claim-gift",
        "http://secure-verify-account.co/login", "gov-refund.help/claim", "rb.gy/k2p9s",
        "https://parcel-reschedule.net/uk", "acme.co/offers"]
# Links in honest messages: the business's own domain (the same number of entries as URLS, so
# choosing one draws the same randomness).
SITE_URLS = ["acme.co/t/ABC123", "acme.co/offers", "northwind.com/terms", "www.brightwave.co.uk/help",
             "fernley.com/orders", "app.lumio.io/account", "kestrel.co/sale", "octopia.com/appointments"]
CHANNELS = ["email", "sms", "chat", "social", "app", "push"]
CURRENCIES = ["£", "$", "€", "A$", "C$", "₹"]


class Gen:
    """Slot filler with its own random stream, so each output file is reproducible."""

    def __init__(self, seed):
        self.r = random.Random(seed)

    def pick(self, xs):
        return self.r.choice(xs)

    def digits(self, n, first="0123456789"):
        return self.pick(first) + "".join(self.pick("0123456789") for _ in range(n - 1))

    def price(self):
        c = self.pick(CURRENCIES)
        if c == "₹":
            return "₹%d" % self.r.choice([499, 999, 1299, 2500, 15000])
        return "%s%s" % (c, self.pick(["5", "9.99", "25", "50", "100", "250", "500", "1,000",
                                       "12.50", "2.99", "4.50", "19"]))

    def small(self):
        return self.pick(["£1.50", "£2.99", "$1.99", "£1.45", "€2.50", "£3", "$2.49", "£0.99"])

    def premium(self):
        return self.pick(["0906 %03d %04d" % (self.r.randint(100, 999), self.r.randint(0, 9999)),
                          "09058 %06d" % self.r.randint(0, 999999),
                          "1-900-%03d-%04d" % (self.r.randint(200, 999), self.r.randint(0, 9999)),
                          "1900 %03d %03d" % (self.r.randint(100, 999), self.r.randint(0, 999)),
                          "0909 %03d %04d" % (self.r.randint(100, 999), self.r.randint(0, 9999))])

    def date(self):
        return self.pick(["12 March", "March 12", "Friday 4 April", "30 November", "1 December",
                          "next Tuesday", "2026-12-03", "03/12/2026", "June 5th", "30.11.2026",
                          "Nov 30, 2026", "the 14th"])

    def time(self):
        return self.pick(["14:05", "9.30am", "10:20", "7:45pm", "18:00", "08:15", "noon",
                          "3pm"])

    def amount(self):
        return self.pick(["€1.234,56", "1 234,56 €", "¥128,000", "₹1,25,000", "$2,400.00",
                          "CHF 1'250.00", "R 12 500", "kr 1 299", "£86.40", "A$312.95"])

    # ---- numbers that are not personal data (hard negatives) ----
    def luhn_ok(self, d):
        s = 0
        for i, ch in enumerate(reversed(d)):
            v = int(ch)
            if i % 2:
                v *= 2
                v = v - 9 if v > 9 else v
            s += v
        return s % 10 == 0

    def luhn_bad(self):
        while True:
            d = self.pick(["4", "5", "37", "6011"]) + self.digits(16)
            d = d[:16]
            if not self.luhn_ok(d):
                return self.pick([d, " ".join(d[i:i + 4] for i in range(0, 16, 4))])

    def iban_like(self):
        """Groups of digits like a bank reference: never a valid card or IBAN."""
        while True:
            n = self.r.choice([12, 14, 16, 18, 20, 22])
            d = self.pick(["0", "1", "2", "8", "9"]) + self.digits(n - 1)
            if n in (16,) and self.luhn_ok(d):
                continue
            return " ".join(d[i:i + 4] for i in range(0, n, 4))

    def iban(self, cc=None):
        spec = {"DE": 18, "FR": 23, "ES": 20, "BE": 12, "NL": 14, "GB": 18, "IT": 23}
        cc = cc or self.pick(list(spec))
        if cc == "GB":
            bban = self.pick(["NWBK", "BARC", "LOYD"]) + self.digits(14)
        elif cc == "NL":
            bban = self.pick(["ABNA", "INGB", "RABO"]) + self.digits(10)
        elif cc == "IT":
            bban = "X" + self.digits(22)
        else:
            bban = self.digits(spec[cc])
        num = "".join(str(int(c, 36)) for c in bban + cc + "00")
        s = "%s%02d%s" % (cc, 98 - int(num) % 97, bban)
        return s

    def bad_iban(self):
        s = self.iban()
        i = self.r.randint(4, len(s) - 1)
        while not s[i].isdigit():
            i = self.r.randint(4, len(s) - 1)
        s = s[:i] + str((int(s[i]) + self.r.randint(1, 9)) % 10) + s[i + 1:]
        return " ".join(s[i:i + 4] for i in range(0, len(s), 4))

    def biz_phone(self):
        r = self.r
        return self.pick([
            "0800 %03d %04d" % (r.randint(100, 999), r.randint(0, 9999)),
            "0345 %03d %04d" % (r.randint(100, 999), r.randint(0, 9999)),
            "0330 %03d %04d" % (r.randint(100, 999), r.randint(0, 9999)),
            "1-800-%03d-%04d" % (r.randint(200, 999), r.randint(0, 9999)),
            "(888) %03d-%04d" % (r.randint(200, 999), r.randint(0, 9999)),
            "1300 %03d %03d" % (r.randint(100, 999), r.randint(0, 999)),
            "1800 %03d %03d" % (r.randint(100, 999), r.randint(0, 999)),
            "13 %02d %02d" % (r.randint(10, 99), r.randint(10, 99)),
            "0120-%03d-%03d" % (r.randint(100, 999), r.randint(0, 999)),
            "0570-%03d-%03d" % (r.randint(0, 999), r.randint(0, 999)),
            "400-%03d-%04d" % (r.randint(100, 999), r.randint(0, 9999)),
            "0800 %02d %02d %02d" % (r.randint(10, 99), r.randint(10, 99), r.randint(10, 99)),
            "1800 %03d %04d" % (r.randint(100, 999), r.randint(0, 9999)),
        ])

    def jp_biz(self):
        r = self.r
        return self.pick(["0120-%03d-%03d" % (r.randint(100, 999), r.randint(0, 999)),
                          "0570-%03d-%03d" % (r.randint(0, 999), r.randint(0, 999)),
                          "0800-%03d-%04d" % (r.randint(100, 999), r.randint(0, 9999))])

    def cn_biz(self):
        r = self.r
        return self.pick(["400-%03d-%04d" % (r.randint(100, 999), r.randint(0, 9999)),
                          "800-%03d-%04d" % (r.randint(100, 999), r.randint(0, 9999)),
                          "95%03d" % r.randint(0, 999)])

    def track(self):
        r = self.r
        return self.pick(["1Z999AA1%08d" % r.randint(0, 99999999),
                          "JD0140%014d" % r.randint(0, 10 ** 14 - 1),
                          "9400 1%03d %04d %04d %04d %02d" % (r.randint(0, 999), r.randint(0, 9999),
                                                               r.randint(0, 9999), r.randint(0, 9999),
                                                               r.randint(0, 99)),
                          "RR%09dGB" % r.randint(0, 999999999),
                          "%04d %04d %04d" % (r.randint(0, 9999), r.randint(0, 9999), r.randint(0, 9999))])

    def isbn(self):
        d = "978" + self.digits(9)
        s = sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(d))
        d += str((10 - s % 10) % 10)
        return "%s-%s-%s-%s-%s" % (d[:3], d[3], d[4:8], d[8:12], d[12])

    def domain_idn(self):
        return self.pick(IDN_DOMAINS + [to_puny(x) for x in IDN_DOMAINS])

    # ---- personal data in national formats (positives) ----
    def phone(self, countries):
        return PHONES[self.pick(countries)](self)

    def ssn(self):
        while True:
            a = self.r.randint(1, 899)
            if a != 666:
                break
        g, s = self.r.randint(1, 99), self.r.randint(1, 9999)
        if (a, g, s) in ((78, 5, 1120), (219, 9, 9999)):
            s += 1
        return self.pick(["%03d%02d%04d" % (a, g, s)] * 3 + ["%03d.%02d.%04d" % (a, g, s)] * 2)

    def email_idn(self):
        local = self.pick(LOCAL_PARTS)
        dom = self.pick(IDN_DOMAINS)
        style = self.r.random()
        if style < 0.35:
            return "%s@%s" % (local, dom)
        if style < 0.7:
            return "%s@%s" % (self.pick(ASCII_LOCALS), to_puny(dom))
        return "%s@%s" % (self.pick(ASCII_LOCALS), dom)


def to_puny(domain):
    return domain.encode("idna").decode("ascii")


IDN_DOMAINS = ["müller.de", "bücher.de", "société.fr", "españa.es", "пример.рф", "例え.jp",
               "中文网.中国", "köln.de", "zürich.ch", "παράδειγμα.ελ", "डाटामेल.भारत",
               "ñandú.com.ar", "straße.de", "øl.no", "dansk-håndværk.dk", "çay.com.tr",
               "почта.рус", "mañana.com", "élève.fr", "münchen-post.de"]
LOCAL_PARTS = ["jürgen.müller", "maría.lópez", "chloé", "søren", "łukasz.wójcik", "иван",
               "δημήτρης", "李雷", "たなか", "राज", "ana.ñúñez", "françois", "björn", "zoë.r",
               "ayşe", "ολγα.κ", "анна.смирнова", "김민준"]
ASCII_LOCALS = ["j.mueller", "maria.lopez", "chloe78", "soren.h", "lukasz", "ivan.petrov",
                "dimitris", "li.lei", "tanaka.k", "raj.kumar", "anna1990", "francois.d",
                "bjorn", "ayse.k", "olga.k"]


def _grp(g, *ns):
    return [g.digits(n) for n in ns]


def _jp(g):
    p = g.pick(["70", "80", "90"])
    a, b = g.digits(4, "123456789"), g.digits(4)
    land = g.pick([("3", 4, 4), ("6", 4, 4), ("45", 3, 4), ("52", 3, 4), ("92", 3, 4)])
    la, lb = g.digits(land[1], "23456789"), g.digits(land[2])
    return g.pick(["0%s-%s-%s" % (p, a, b), "0%s %s %s" % (p, a, b), "0%s%s%s" % (p, a, b),
                   "+81 %s-%s-%s" % (p, a, b), "+81 %s %s %s" % (p, a, b),
                   "+81-%s-%s-%s" % (p, a, b), "+81 (0)%s %s %s" % (p, a, b),
                   "0%s-%s-%s" % (land[0], la, lb), "+81 %s-%s-%s" % (land[0], la, lb)])


def _cn(g):
    p = "1" + g.pick("3456789") + g.digits(1)
    a, b = g.digits(4), g.digits(4)
    area = g.pick(["10", "21", "755", "20", "28"])
    la = g.digits(8 if len(area) == 2 else 7, "2345678")
    return g.pick(["%s %s %s" % (p, a, b), "%s-%s-%s" % (p, a, b), "%s%s%s" % (p, a, b),
                   "+86 %s %s %s" % (p, a, b), "+86-%s-%s-%s" % (p, a, b), "+86 %s%s%s" % (p, a, b),
                   "0086 %s %s %s" % (p, a, b), "0%s-%s %s" % (area, la[:4], la[4:]),
                   "(0%s) %s %s" % (area, la[:4], la[4:]), "+86 %s %s %s" % (area, la[:4], la[4:])])


def _gr(g):
    a = "21" + g.digits(1)
    r7 = g.digits(7)
    th = "2310"
    r6 = g.digits(6)
    m = "69" + g.pick("3456789")
    return g.pick(["%s %s %s" % (a, r7[:3], r7[3:]), "%s-%s" % (a, r7), "%s %s" % (a, r7),
                   "+30 %s %s %s" % (a, r7[:3], r7[3:]), "+30 %s-%s" % (a, r7), "(+30) %s %s" % (a, r7),
                   "%s %s" % (th, r6), "%s-%s-%s" % (th, r6[:3], r6[3:]), "+30 %s %s" % (th, r6),
                   "%s %s %s" % (m, r7[:3], r7[3:]), "+30 %s %s %s" % (m, r7[:3], r7[3:]),
                   "+30 %s%s" % (m, r7)])


def _il(g):
    a = g.pick("23489")
    r7 = g.digits(7, "23456789")
    m = "5" + g.pick("0234578")
    return g.pick(["0%s-%s-%s" % (a, r7[:3], r7[3:]), "0%s-%s" % (a, r7), "0%s %s %s" % (a, r7[:3], r7[3:]),
                   "+972 %s %s %s" % (a, r7[:3], r7[3:]), "+972-%s-%s-%s" % (a, r7[:3], r7[3:]),
                   "+972 (0)%s %s" % (a, r7), "0%s-%s-%s" % (m, r7[:3], r7[3:]), "0%s-%s" % (m, r7),
                   "0%s %s %s" % (m, r7[:3], r7[3:]), "+972 %s-%s-%s" % (m, r7[:3], r7[3:]),
                   "+972 %s %s %s" % (m, r7[:3], r7[3:])])


def _fr(g):
    p = g.pick(["6", "7", "1", "4", "5"])
    r = [g.digits(2) for _ in range(4)]
    return g.pick(["0%s %s" % (p, " ".join(r)), "0%s.%s" % (p, ".".join(r)),
                   "+33 %s %s" % (p, " ".join(r)), "+33 (0)%s %s" % (p, " ".join(r)),
                   "0%s-%s" % (p, "-".join(r))])


def _de(g):
    m = "1" + g.pick(["51", "52", "60", "70", "71", "76"])
    return g.pick(["0%s %s" % (m, g.digits(8, "123456789")), "0%s %s" % (m, g.digits(7, "123456789")),
                   "030 %s" % g.digits(8, "123456789"), "+49 %s %s" % (m, g.digits(8, "123456789")),
                   "+49 (0)30 %s" % g.digits(8, "123456789"), "089/%s" % g.digits(7, "123456789")])


def _in(g):
    a, b = g.digits(5, "6789"), g.digits(5)
    return g.pick(["%s %s" % (a, b), "+91 %s %s" % (a, b), "+91-%s-%s" % (a, b), "0%s %s" % (a, b),
                   "+91 %s%s" % (a, b)])


def _au(g):
    a, b = g.digits(3), g.digits(3)
    l1, l2 = g.digits(4, "2345689"), g.digits(4)
    return g.pick(["04%s %s %s" % (g.digits(2), a, b), "04%s %s%s" % (g.digits(2), a, b),
                   "(0%s) %s %s" % (g.pick("2378"), l1, l2), "0%s %s %s" % (g.pick("2378"), l1, l2),
                   "+61 4%s %s %s" % (g.digits(2), a, b), "+61 %s %s %s" % (g.pick("2378"), l1, l2)])


def _uk(g):
    return g.pick(["020 %s %s" % (g.digits(4, "378"), g.digits(4)),
                   "0161 %s %s" % (g.digits(3, "2345789"), g.digits(4)),
                   "+44 20 %s %s" % (g.digits(4, "378"), g.digits(4)),
                   "(0113) %s %s" % (g.digits(3, "2345789"), g.digits(4)),
                   "01632 %s" % g.digits(6, "2345789")])


def _kr(g):
    a, b = g.digits(4, "23456789"), g.digits(4)
    return g.pick(["010-%s-%s" % (a, b), "010 %s %s" % (a, b), "+82 10-%s-%s" % (a, b),
                   "02-%s-%s" % (g.digits(3, "2345678"), b), "02-%s-%s" % (a, b)])


def _br(g):
    ddd = g.pick(["11", "21", "31", "41", "51"])
    return g.pick(["(%s) 9%s-%s" % (ddd, g.digits(4), g.digits(4)),
                   "+55 %s 9%s-%s" % (ddd, g.digits(4), g.digits(4)),
                   "(%s) %s-%s" % (ddd, g.digits(4, "2345"), g.digits(4)),
                   "+55 (%s) 9%s %s" % (ddd, g.digits(4), g.digits(4))])


def _es(g):
    m = g.pick("67") + g.digits(2)
    return g.pick(["%s %s %s" % (m, g.digits(3), g.digits(3)),
                   "+34 %s %s %s %s" % (m, g.digits(2), g.digits(2), g.digits(2)),
                   "+34 91%s %s %s" % (g.digits(1), g.digits(3), g.digits(3)),
                   "91 %s %s %s" % (g.digits(3), g.digits(2), g.digits(2))])


def _it(g):
    m = "3" + g.pick(["47", "33", "28", "20", "49"])
    return g.pick(["+39 %s %s %s" % (m, g.digits(3), g.digits(4)), "%s %s %s" % (m, g.digits(3), g.digits(4)),
                   "06 %s %s" % (g.digits(4), g.digits(4)), "+39 06 %s %s" % (g.digits(4), g.digits(4)),
                   "02-%s" % g.digits(8)])


def _tr(g):
    m = "5" + g.pick(["32", "33", "42", "05", "55"])
    return g.pick(["0%s %s %s %s" % (m, g.digits(3), g.digits(2), g.digits(2)),
                   "+90 %s %s %s %s" % (m, g.digits(3), g.digits(2), g.digits(2)),
                   "(0212) %s %s %s" % (g.digits(3, "2345"), g.digits(2), g.digits(2))])


def _za(g):
    m = "0" + g.pick(["82", "83", "72", "71", "61"])
    return g.pick(["%s %s %s" % (m, g.digits(3), g.digits(4)), "+27 %s %s %s" % (m[1:], g.digits(3), g.digits(4)),
                   "011 %s %s" % (g.digits(3, "2345678"), g.digits(4))])


def _mx(g):
    return g.pick(["+52 55 %s %s" % (g.digits(4), g.digits(4)), "55 %s %s" % (g.digits(4, "12345"), g.digits(4)),
                   "+52 1 55 %s %s" % (g.digits(4), g.digits(4))])


def _sg(g):
    return g.pick(["+65 %s %s" % (g.digits(4, "89"), g.digits(4)), "%s %s" % (g.digits(4, "89"), g.digits(4)),
                   "+65 6%s %s" % (g.digits(3), g.digits(4))])


def _nl(g):
    return g.pick(["06-%s" % g.digits(8), "06 %s %s" % (g.digits(4), g.digits(4)),
                   "020-%s %s" % (g.digits(3, "2345678"), g.digits(4)), "+31 6 %s" % g.digits(8)])


def _hk(g):
    return g.pick(["+852 %s %s" % (g.digits(4, "5679"), g.digits(4)), "%s %s" % (g.digits(4, "5679"), g.digits(4))])


def _tw(g):
    return g.pick(["09%s-%s-%s" % (g.digits(2), g.digits(3), g.digits(3)),
                   "09%s %s %s" % (g.digits(2), g.digits(3), g.digits(3)),
                   "+886 9%s %s %s" % (g.digits(2), g.digits(3), g.digits(3)),
                   "(02) %s-%s" % (g.digits(4, "2378"), g.digits(4))])


# Plans without a trunk prefix, in the training split only: their numbers are bare digit groups.
def _pt(g):
    m = g.pick(["91", "92", "93", "96"])
    return g.pick(["%s%s %s %s" % (m, g.digits(1), g.digits(3), g.digits(3)),
                   "+351 %s%s %s %s" % (m, g.digits(1), g.digits(3), g.digits(3)),
                   "21%s %s %s" % (g.digits(1), g.digits(3), g.digits(3))])


def _dk(g):
    return g.pick(["%s %s %s %s" % (g.digits(2, "2345"), g.digits(2), g.digits(2), g.digits(2)),
                   "+45 %s %s %s %s" % (g.digits(2, "2345"), g.digits(2), g.digits(2), g.digits(2))])


def _no(g):
    return g.pick(["%s %s %s" % (g.digits(3, "49"), g.digits(2), g.digits(3)),
                   "+47 %s %s %s" % (g.digits(3, "49"), g.digits(2), g.digits(3)),
                   "22 %s %s %s" % (g.digits(2), g.digits(2), g.digits(2))])


def _pl(g):
    return g.pick(["%s %s %s" % (g.digits(3, "5678"), g.digits(3), g.digits(3)),
                   "%s-%s-%s" % (g.digits(3, "5678"), g.digits(3), g.digits(3)),
                   "+48 %s %s %s" % (g.digits(3, "5678"), g.digits(3), g.digits(3)),
                   "22 %s %s %s" % (g.digits(3), g.digits(2), g.digits(2))])


PHONES = {"jp": _jp, "cn": _cn, "gr": _gr, "il": _il, "fr": _fr, "de": _de, "in": _in, "au": _au,
          "uk": _uk, "kr": _kr, "br": _br, "es": _es, "it": _it, "tr": _tr, "za": _za, "mx": _mx,
          "sg": _sg, "nl": _nl, "hk": _hk, "tw": _tw, "pt": _pt, "dk": _dk, "no": _no, "pl": _pl}
# The named formats (Japanese and Chinese mobiles, Greek and Israeli landlines) are in both
# splits, weighted up; the held-out split also has countries the training split does not.
TRAIN_PHONES = ["jp", "jp", "cn", "cn", "gr", "gr", "il", "il", "fr", "de", "in", "au", "uk", "pt", "dk",
                "no", "pl"]
HELD_PHONES = ["jp", "cn", "gr", "il", "kr", "br", "es", "it", "tr", "za", "mx", "sg", "nl",
               "hk", "tw"]

SLOT = re.compile(r"(?<!\{)\{(\w+)\}(?!\})")


def fill(g, t, extra=None):
    two = lambda: "%02d" % g.r.randint(0, 59)  # noqa: E731
    fns = {
        "n": lambda: str(g.r.randint(2, 48)), "big": lambda: g.pick(["1,200", "3,000", "12,481", "2,000", "40,000", "850", "7,312", "25k"]),
        "name": lambda: g.pick(NAMES), "agent": lambda: g.pick(AGENTS), "city": lambda: g.pick(CITIES),
        "product": lambda: g.pick(PRODUCTS), "thing": lambda: g.pick(THINGS), "mins": lambda: str(g.r.randint(2, 55)),
        "pct": lambda: str(g.pick([10, 15, 20, 25, 30, 40, 50, 60, 70])), "price": g.price, "brand": lambda: g.pick(BRANDS),
        "category": lambda: g.pick(CATEGORIES), "mm": two, "ss": two, "h": lambda: str(g.r.randint(1, 23)),
        "m": lambda: str(g.r.randint(2, 59)), "d": lambda: str(g.r.randint(1, 6)), "s": lambda: str(g.r.randint(1, 59)),
        "event": lambda: g.pick(EVENTS), "weekday": lambda: g.pick(WEEKDAYS), "shop": lambda: g.pick(SHOPS),
        "url": lambda: g.pick(URLS), "small": g.small, "short": lambda: str(g.pick([87121, 80085, 69988, 88600, 83355])),
        "premium": g.premium, "bank": lambda: g.pick(BANKS), "resort": lambda: g.pick(RESORTS),
        "gadget": lambda: g.pick(GADGETS), "date": g.date, "time": g.time, "amount": g.amount,
        "order": lambda: g.pick(["#%d" % g.r.randint(100000, 9999999), g.luhn_bad(), "A-%d" % g.r.randint(10000, 99999)]),
        "track": g.track, "case": lambda: "CS-2026-%06d" % g.r.randint(0, 999999), "inv": lambda: "INV-%06d" % g.r.randint(0, 999999),
        "luhn_bad": g.luhn_bad, "iban_like": g.iban_like, "bad_iban": g.bad_iban, "biz_phone": g.biz_phone,
        "jp_biz": g.jp_biz, "cn_biz": g.cn_biz,
        "meter": lambda: g.pick(["%02d %04d %04d %03d" % (g.r.randint(10, 99), g.r.randint(0, 9999), g.r.randint(0, 9999), g.r.randint(0, 999)),
                                 "%010d" % g.r.randint(10 ** 8, 10 ** 10 - 1)]),
        "flight": lambda: g.pick(["BA 117", "LH 903", "NH 212", "QF 1", "EI 154", "UA 901"]),
        "gate": lambda: g.pick(["B32", "14", "A7", "C21"]), "pnr": lambda: "".join(g.pick("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6)),
        "policy": lambda: g.pick(["HOM-2026-%07d" % g.r.randint(0, 9999999), "%04d %04d %04d" % (g.r.randint(0, 99), g.r.randint(0, 9999), g.r.randint(0, 9999))]),
        "ticket": lambda: str(g.r.randint(100000, 9999999)), "custno": lambda: g.pick(["C-%04d %04d" % (g.r.randint(0, 9999), g.r.randint(0, 9999)), "%08d" % g.r.randint(0, 99999999)]),
        "acct_ref": lambda: "%04d-%04d-%04d" % (g.r.randint(0, 9999), g.r.randint(0, 9999), g.r.randint(0, 9999)),
        "version": lambda: g.pick(["14.2.1", "2026.11.3", "5.0.12", "3.18.204"]), "isbn": g.isbn,
        "partno": lambda: g.pick(["%03d.%02d.%04d" % (g.r.randint(100, 899), g.r.randint(10, 99), g.r.randint(1000, 9999)),
                                  "%03d.%03d.%02d" % (g.r.randint(100, 999), g.r.randint(0, 999), g.r.randint(0, 99))]),
        "serial": lambda: "SN " + "".join(g.pick("0123456789ABCDEFGHJK") for _ in range(10)),
        "claim": lambda: "CLM-%06d" % g.r.randint(0, 999999), "domain_idn": g.domain_idn, "otp": lambda: "%06d" % g.r.randint(0, 999999),
        "last4": lambda: "%04d" % g.r.randint(0, 9999), "month": lambda: g.pick(MONTHS),
    }
    if extra:
        fns.update(extra)

    def rep(m):
        f = fns.get(m.group(1))
        return f() if f else m.group(0)
    return SLOT.sub(rep, t)


GREET_EMAIL = ["Hi {name},\n\n", "Dear {name},\n", "Hello {name}, ", "Good morning {name}. ", "Hey {name}! ",
               "G'day {name}, ", "Dear Customer,\n\n", "", "Hiya {name}, "]
CLOSE_EMAIL = ["", "\n\nBest wishes,\n{agent}", " Kind regards, {agent}", " Thanks, {agent}", "\n\nCheers,\n{agent}",
               " Warm regards,\nThe {brand} team", " Regards, {agent} (Customer Care)"]
SMS_SENDER = ["{brand}: ", "FreeMsg: ", "", "", "{shop}: ", "[{brand}] "]
SMS_TAIL = ["", "", " Reply STOP to opt out.", " STOP to end", " Txt STOP to 80085 to stop.", " Opt out: STOP"]
CHAT_OPEN = ["", "", "Thanks for waiting. ", "Sure! ", "I've checked. ", "Okay. "]


def frame(g, core, kind, channel):
    """Puts a phrasing on a channel the way it would appear there."""
    if channel == "sms":
        return fill(g, g.pick(SMS_SENDER)) + core + fill(g, g.pick(SMS_TAIL))
    if channel == "email":
        return fill(g, g.pick(GREET_EMAIL)) + core + fill(g, g.pick(CLOSE_EMAIL))
    if channel == "chat":
        return g.pick(CHAT_OPEN) + core
    if channel == "app" and kind == "confirmshaming" and not core.startswith("["):
        head = fill(g, g.pick(["Get {pct}% off your first order", "Add protection to your {product}?",
                               "Stay in the loop", "Before you go…", "Upgrade to Premium",
                               "Protect your trip"]))
        yes = g.pick(["[Yes, please]", "[Claim my discount]", "[Add protection]", "[Sign me up]",
                      "[Keep my benefits]", "[Upgrade now]"])
        return "%s\n%s  %s" % (head, yes, core if len(core) > 40 else "[%s]" % core)
    if channel == "app" and kind in ("social_proof", "urgency", "sneaking"):
        pre = fill(g, g.pick(["{product} – {price}\n", "", "Basket (2 items)\n", "", "Hotel {city} Central · 4★\n"]))
        return pre + core
    if channel == "social" and kind in ("social_proof", "urgency", "sms_lure"):
        return core + g.pick(["", " #deals", " \U0001F449 link in bio", " #sale #offer", ""])
    return core  # push


def entry(item, default):
    return item if isinstance(item, tuple) else (item, default)


def lines_for(g, bank, split):
    out = []

    def add(text, labels, kind, channel, ordinary, sector=None):
        rec = {"text": text, "labels": labels, "channel": channel, "ordinary": ordinary, "kind": kind}
        if sector:
            rec["sector"] = sector
        out.append(rec)

    n_pos = 330 if split == "train" else 140
    n_neg_kind = 90 if split == "train" else 40
    n_ord = 2400 if split == "train" else 1000
    positive = [("social_proof", bank.SOCIAL_PROOF, ["pressure"]), ("urgency", bank.URGENCY, ["pressure"]),
                ("confirmshaming", bank.CONFIRMSHAMING, ["pressure"]), ("sneaking", bank.SNEAKING, ["misleading"]),
                ("sms_lure", bank.LURES, ["misleading"])]
    for kind, items, default in positive:
        # Every phrasing at least once, then random ones, each on a random channel.
        order = list(items) + [g.pick(items) for _ in range(max(0, n_pos - len(items)))]
        for it in order:
            t, labels = entry(it, default)
            ch = "sms" if kind == "sms_lure" and g.r.random() < 0.8 else g.pick(CHANNELS)
            add(frame(g, fill(g, t), kind, ch), sorted(labels), kind, ch, False)
    countries = TRAIN_PHONES if split == "train" else HELD_PHONES
    for _ in range(n_pos):
        t = g.pick(bank.PHONE_FRAMES)
        ch = g.pick(CHANNELS)
        core = fill(g, t, {"p": lambda: g.phone(countries), "p2": lambda: g.phone(countries)})
        add(frame(g, core, "pii", ch), ["pii"], "pii_phone", ch, False)
    for _ in range(n_pos):
        ch = g.pick(CHANNELS)
        core = fill(g, g.pick(bank.SSN_FRAMES), {"x": g.ssn, "y": g.ssn})
        add(frame(g, core, "pii", ch), ["pii"], "pii_ssn", ch, False)
    for _ in range(n_pos):
        ch = g.pick(CHANNELS)
        core = fill(g, g.pick(bank.EMAIL_FRAMES), {"e": g.email_idn, "e2": g.email_idn})
        add(frame(g, core, "pii", ch), ["pii"], "pii_email_idn", ch, False)
    negative = [("social_proof_honest", bank.SOCIAL_PROOF_NEG), ("urgency_honest", bank.URGENCY_NEG),
                ("confirmshaming_honest", bank.CONFIRMSHAMING_NEG), ("sneaking_honest", bank.SNEAKING_NEG),
                ("sms_lure_honest", bank.LURE_NEG), ("pii_honest", bank.PII_NEG), ("template", bank.TEMPLATE_NEG)]
    for kind, items in negative:
        order = list(items) + [g.pick(items) for _ in range(max(0, n_neg_kind - len(items)))]
        for t in order:
            ch = "sms" if kind == "sms_lure_honest" else g.pick(CHANNELS)
            add(frame(g, fill(g, t, {"url": lambda: g.pick(SITE_URLS)}), kind, ch), [], kind, ch, True)
    sectors = list(bank.SECTORS)
    for _ in range(n_ord):
        sec = g.pick(sectors)
        k = g.pick([1, 1, 2, 2, 3])
        body = " ".join(fill(g, t) for t in g.r.sample(bank.SECTORS[sec], k))
        ch = g.pick(CHANNELS)
        if ch == "email":
            text = fill(g, g.pick(GREET_EMAIL)) + body + fill(g, g.pick(CLOSE_EMAIL))
        elif ch == "chat":
            text = g.pick(CHAT_OPEN) + body
        elif ch == "sms":
            text = fill(g, g.pick(["{brand}: ", "", "Hi {name}, "])) + body
        else:
            text = body
        add(text, [], "ordinary", ch, True, sec)
    g.r.shuffle(out)
    return out


def write(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        for rec in lines:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print("wrote %d lines to %s" % (len(lines), path), file=sys.stderr)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    write(os.path.join(here, "corpus", "kinds.jsonl"), lines_for(Gen(20261207), bank_train, "train"))
    write(os.path.join(here, "corpus", "kinds_heldout.jsonl"), lines_for(Gen(20261208), bank_heldout, "heldout"))


if __name__ == "__main__":
    main()
