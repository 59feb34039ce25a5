#!/usr/bin/env python3
"""Generates the labelled guard corpus (tests/quality/corpus/guard.jsonl), deterministically.

Every line is {"text", "labels", "channel", "ordinary"}: positives for each category across
channels and tones, hard negatives (numbers that fail checksums, tracking ids, dates, honest
prices, plain deadlines, polite firm refusals) and ordinary support replies. Written for this
project; python3 standard library only."""
import json, random, sys

R = random.Random(20261125)
NAMES = ["Sam", "Priya", "Jordan", "Mei", "Oluwaseun", "Lucía", "Tomasz", "Aisha", "Liam", "Noor",
         "Hannah", "Diego", "Yuki", "Fatima", "Chris", "Zoë", "Ahmed", "Grace", "Mateo", "Ingrid"]
AGENTS = ["Alex", "Dana", "Ravi", "Beth", "Kofi", "Marta", "Jin", "Ellie"]
CHANNELS = ["email", "sms", "chat", "social", "app", "push"]
DATES = ["12 March", "March 12", "Friday 4 April", "the 30th of November", "1 December", "Monday",
         "next Tuesday", "2026-12-03", "03/12/2026", "June 5th", "the end of the month"]
PRICES = ["$45.00", "£19.99", "€120", "$7.50", "£249", "€9.99", "$1,299.00", "£3.40", "$60"]
ITEMS = ["order", "parcel", "refund", "replacement", "booking", "subscription", "repair",
         "return", "exchange", "warranty claim", "invoice", "account"]
PRODUCTS = ["headphones", "blender", "jacket", "phone case", "laptop stand", "running shoes",
            "coffee machine", "desk lamp", "suitcase", "plan", "membership", "sofa"]

def pick(x): return R.choice(x)

def luhn_complete(prefix, length):
    digits = [int(c) for c in prefix]
    while len(digits) < length - 1:
        digits.append(R.randint(0, 9))
    for check in range(10):
        d = digits + [check]
        s = 0
        for i, v in enumerate(reversed(d)):
            if i % 2: v *= 2; v = v - 9 if v > 9 else v
            s += v
        if s % 10 == 0:
            return "".join(map(str, d))

def luhn_fail(prefix, length):
    good = luhn_complete(prefix, length)
    return good[:-1] + str((int(good[-1]) + R.randint(1, 9)) % 10)

def fmt_card(n):
    style = R.random()
    if style < 0.45 and len(n) == 16: return " ".join(n[i:i+4] for i in range(0, 16, 4))
    if style < 0.6 and len(n) == 16: return "-".join(n[i:i+4] for i in range(0, 16, 4))
    if len(n) == 15 and style < 0.5: return n[:4] + " " + n[4:10] + " " + n[10:]
    return n

def card():
    brand = pick([("4", 16), ("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("37", 15),
                  ("34", 15), ("6011", 16), ("65", 16), ("3530", 16), ("4", 13)])
    return fmt_card(luhn_complete(*brand))

def ssn():
    while True:
        a = R.randint(1, 899)
        if a != 666: break
    s = "%03d-%02d-%04d" % (a, R.randint(1, 99), R.randint(1, 9999))
    return s if R.random() < 0.85 else s.replace("-", " ")

IBAN_SPEC = {"DE": 18, "GB": None, "FR": 23, "NL": None, "ES": 20, "IT": None, "BE": 12, "IE": None}
def iban():
    cc = pick(["DE", "GB", "FR", "NL", "ES", "IT", "BE", "IE"])
    if cc == "GB": bban = pick(["NWBK", "BARC", "LOYD", "HBUK"]) + "".join(str(R.randint(0, 9)) for _ in range(14))
    elif cc == "IE": bban = pick(["AIBK", "BOFI"]) + "".join(str(R.randint(0, 9)) for _ in range(14))
    elif cc == "NL": bban = pick(["ABNA", "INGB", "RABO"]) + "".join(str(R.randint(0, 9)) for _ in range(10))
    elif cc == "IT": bban = "X" + "".join(str(R.randint(0, 9)) for _ in range(10)) + "".join(str(R.randint(0, 9)) for _ in range(12))
    else: bban = "".join(str(R.randint(0, 9)) for _ in range(IBAN_SPEC[cc]))
    num = "".join(str(int(c, 36)) for c in bban + cc + "00")
    chk = 98 - int(num) % 97
    s = "%s%02d%s" % (cc, chk, bban)
    return " ".join(s[i:i+4] for i in range(0, len(s), 4)) if R.random() < 0.6 else s

def email():
    first = pick(["john", "maria", "p.sharma", "lee", "anna", "tom", "k.okafor", "sofia", "d.nguyen", "emma"])
    last = pick(["smith", "garcia", "kowalski", "chen", "brown", "", "1987", "_w", ".jones"])
    dom = pick(["gmail.com", "yahoo.co.uk", "outlook.com", "hotmail.fr", "icloud.com", "proton.me", "web.de", "btinternet.com"])
    return (first + last).strip(".") + "@" + dom

def phone():
    return pick([
        "(%d) %d-%04d" % (R.randint(201, 799), R.randint(201, 999), R.randint(0, 9999)),
        "%d-%d-%04d" % (R.randint(201, 799), R.randint(201, 999), R.randint(0, 9999)),
        "+1 %d %d %04d" % (R.randint(201, 799), R.randint(201, 999), R.randint(0, 9999)),
        "07%d %06d" % (R.randint(100, 999), R.randint(0, 999999)),
        "+44 7%d %06d" % (R.randint(100, 999), R.randint(0, 999999)),
        "+49 15%d %07d" % (R.randint(1, 9), R.randint(0, 9999999)),
        "+33 6 %02d %02d %02d %02d" % tuple(R.randint(10, 99) for _ in range(4)),
        "%d.%d.%04d" % (R.randint(201, 799), R.randint(201, 999), R.randint(0, 9999)),
    ])

def dob():
    return pick(["%d/%d/19%d" % (R.randint(1, 28), R.randint(1, 12), R.randint(40, 99)),
                 "%d %s 19%d" % (R.randint(1, 28), pick(["January", "March", "July", "Oct", "December"]), R.randint(40, 99)),
                 "%s %d, 19%d" % (pick(["April", "May", "Aug", "September"]), R.randint(1, 28), R.randint(40, 99)),
                 "19%d-%02d-%02d" % (R.randint(40, 99), R.randint(1, 12), R.randint(1, 28))])

def nino():
    return "%s%s %02d %02d %02d %s" % (pick("ABCEHJKLMPRSTWXY"), pick("ABCEHJKLMNPRSTWXYZ"), R.randint(10, 99), R.randint(10, 99), R.randint(10, 99), pick("ABCD"))

def password():
    return pick(["Summer2024!", "hunter42", "Xk29!pq7", "Tr0ub4dor", "welcome123", "P@ssw0rd9", "blue-fish-77"])

def address():
    return "%d %s %s" % (R.randint(2, 999), pick(["Elm", "Oak", "Maple", "Station", "Church", "Park", "High", "Victoria", "Willow", "King"]),
                         pick(["Street", "Road", "Avenue", "Lane", "Drive", "Close", "Court", "Way", "St", "Rd"]))

def greet(n): return pick(["Hi %s, " % n, "Hello %s,\n\n" % n, "Dear %s,\n" % n, "Hey %s! " % n, "", "Good morning %s. " % n, "Thanks for getting in touch, %s. " % n])
def close(): return pick(["", " Thanks, %s" % pick(AGENTS), "\n\nBest regards,\n%s" % pick(AGENTS), " Kind regards, %s from Support" % pick(AGENTS), " Cheers!", " Have a lovely day."])

ORD = [
    "I've checked your {item} and it was sent on {date}.",
    "Your refund of {price} has been processed and should reach your bank in 5 to 10 working days.",
    "I'm sorry for the delay with your {item}.",
    "Could you send me a photo of the damaged {product}?",
    "Your tracking number is {track}.",
    "You can return the {product} within 30 days of delivery.",
    "I've updated the delivery address on your account.",
    "The total was {price} including tax and delivery.",
    "Your subscription renews on {date}, and you can cancel any time in Settings.",
    "If you have any other questions, just reply to this message.",
    "Thanks for your patience while we looked into this.",
    "I've passed your feedback to the product team.",
    "The replacement {product} is on its way.",
    "Your order number is {ordno}.",
    "We received the returned {product} on {date}.",
    "I can see the payment on the card ending {last4}.",
    "Please allow up to 48 hours for the change to show.",
    "I'm happy to help with that.",
    "Our team is available Monday to Friday, 9am to 5pm.",
    "You can reach us at support@{company}.com or call us on 1-800-{ph4}.",
    "The engineer is booked for {date} between 8am and 12pm.",
    "I've applied a {pct}% discount to your next order as an apology.",
    "Your case reference is {case}.",
    "Unfortunately the {product} is out of stock in that size, but we expect more on {date}.",
    "I'm afraid we can't offer a refund on this order because it was delivered more than 30 days ago, but I can arrange a repair.",
    "I understand this is frustrating, and I'm sorry it happened.",
    "We can't change the delivery date once the parcel has left our warehouse.",
    "That isn't something we're able to do, but here is what I can offer instead.",
    "Delivery usually takes 3 to 5 working days.",
    "The price is {price} per month and there are no other charges.",
    "The sale ends on {date}.",
    "Your return window closes on {date}.",
    "Please reply by {date} so we can arrange collection.",
    "We'll send you one reminder a week before your trial ends.",
    "The invoice {inv} is attached.",
    "Your appointment is confirmed for {date} at 10:30.",
    "I've reset the settings on your account; please try signing in again.",
    "We aim to reply to all emails within one working day.",
    "Our 30-day money-back guarantee applies to this purchase.",
    "The warranty covers manufacturing faults for two years.",
    "We've lowered the price from $50 to $40 for everyone.",
    "Shipping costs {price} and is shown before you pay.",
    "Most orders arrive within a week, although some take longer at busy times.",
    "We can't guarantee a delivery date, but we'll keep you updated.",
    "The parcel weighs 2.5 kg and measures 40 x 30 x 10 cm.",
    "Version 2.14.3 of the app fixes this.",
    "Your loyalty balance is 1,250 points.",
    "I've cancelled the duplicate order {ordno} for you.",
    "Call us on 0800 {uk6} if you'd rather talk it through.",
    "Please keep the receipt {inv} for your records.",
    "There's no need to do anything else.",
    "Your booking for 2 adults on {date} is confirmed.",
    "The store at 12 High Street, Leeds, opens at 9am.",
    "Please send the item back to our returns centre at 5 Dock Road, Bristol.",
    "I've escalated this to my manager, who will reply by {date}.",
    "Sorry, we don't ship to that country yet.",
    "We only have two in blue at the moment; would you like me to reserve one?",
    "I'd recommend restarting the router and waiting two minutes.",
    "Your password reset link expires in 24 hours.",
    "We'll never ask for your PIN or password.",
    "This isn't risk-free for us either, so we check every claim carefully.",
]

def fill(t):
    return t.format(item=pick(ITEMS), date=pick(DATES), price=pick(PRICES), product=pick(PRODUCTS),
                    track=pick(["1Z999AA1%08d" % R.randint(0, 99999999), "JD0140%014d" % R.randint(0, 10**14 - 1),
                                "9400 1%03d %04d %04d %04d %02d" % (R.randint(0, 999), R.randint(0, 9999), R.randint(0, 9999), R.randint(0, 9999), R.randint(0, 99)),
                                "RR%09dGB" % R.randint(0, 999999999)]),
                    ordno=pick(["#%d" % R.randint(100000, 99999999), luhn_fail("4", 16), luhn_fail("5", 16), "A-%d" % R.randint(10000, 99999),
                                "%09d" % R.randint(0, 999999999), "%d-%d" % (R.randint(100, 999), R.randint(1000000, 9999999))]),
                    last4="%04d" % R.randint(0, 9999), company=pick(["acme", "brightshop", "northwind", "candor"]),
                    ph4="%03d-%04d" % (R.randint(200, 999), R.randint(0, 9999)), pct=pick([10, 15, 20]),
                    case=pick(["CS-2026-%06d" % R.randint(0, 999999), "#%d" % R.randint(10000, 999999)]),
                    inv="INV-%d" % R.randint(100000, 999999), uk6="%03d %04d" % (R.randint(100, 999), R.randint(0, 9999)))

def ordinary(k=None):
    k = k or R.randint(1, 3)
    return " ".join(fill(pick(ORD)) for _ in range(k))

# ---- positives ----------------------------------------------------------------------------
PII_T = [
    ("The card on file is {card}.", card), ("I charged {card} for the balance.", card),
    ("Card number: {card}, exp 09/28.", card), ("Can you confirm the card {card} is yours?", card),
    ("We refunded {card} yesterday.", card), ("Payment taken from {card}", card),
    ("Your SSN {x} has been verified.", ssn), ("SSN: {x}", ssn), ("We have your social security number as {x}.", ssn),
    ("The social security number on the application is {x}.", ssn),
    ("Please transfer the amount to IBAN {x}.", iban), ("Refund will go to {x}.", iban),
    ("Bank details: {x}", iban), ("The IBAN we hold is {x}, is that right?", iban),
    ("Her email is {x}.", email), ("I've forwarded it to {x}.", email), ("You can contact him at {x}", email),
    ("The other customer, {x}, reported the same.", email), ("Login email: {x}", email),
    ("His mobile number is {x}.", phone), ("Her number is {x}, she asked you to call.", phone),
    ("The courier will call you at {x}.", phone), ("Text the driver on {x}.", phone), ("Mobile: {x}", phone),
    ("Your date of birth is {x}.", dob), ("DOB: {x}", dob), ("She was born on {x}.", dob),
    ("Your temporary password is {x}", password), ("password: {x}", password), ("The new PIN is {pin}.", None),
    ("National Insurance number {x} is on the form.", nino), ("NI number: {x}", nino),
    ("The parcel is going to {x}, Springfield.", address), ("We have your home address as {x}.", address),
    ("Her address: {x}, Leeds LS6 2AB", address),
    ("Your CVV {cvv} has been saved.", None), ("security code: {cvv}", None),
]

def pii_sentence():
    t, gen = pick(PII_T)
    return t.format(card=card(), x=gen() if gen else "", pin=R.randint(1000, 9999), cvv=R.randint(100, 999))

PRESSURE_P = [
    "{Act} now, this offer ends tonight!", "Hurry, only {n} left in stock.", "Don't miss out: the {pct}% discount expires in {h} hours.",
    "This is your last chance to {verb} at this price.", "Only {n} seats left, book before they're gone.",
    "{n} other customers are viewing this right now.", "Limited time offer: {verb} today or pay more tomorrow.",
    "No thanks, I don't want to save money.", "Are you sure you want to miss out on these savings?",
    "Your account will be suspended unless you upgrade today.", "We'll keep reminding you every day until you upgrade.",
    "You still haven't upgraded! Why haven't you claimed your bonus?", "Selling fast - almost sold out!",
    "Time is running out, decide now.", "Prices go up at midnight, so {verb} now.", "This deal won't last, grab it now!",
    "{n} people bought this in the last hour.", "While stocks last, so be quick!", "Act fast, offer expires in {h} hours.",
    "If you don't pay today you'll lose access to everything.", "Pay within 24 hours or we will take legal action.",
    "To cancel, you must call our retention team between 9 and 5.", "Cancellation is only possible by post.",
    "We're so sad to see you go. Are you sure you want to give up your rewards?", "Don't wait, stock is low!",
    "Only {h} hours left to claim your discount!!", "It's now or never.", "Today only: {pct}% off everything.",
    "Everyone is upgrading, don't be the only one left behind.", "Your trial converts to paid automatically without notice.",
    "This is our third reminder: {verb} before it's too late.", "Final chance - the price doubles tomorrow!",
    "Failure to pay will result in your account being sent to collections.", "We will report you to the credit bureaus if you don't pay.",
    "Book now, spaces are filling up fast.", "Once it's gone, it's gone!", "Only {n} rooms left at this price.",
    "I'd rather pay full price.", "Click here or you'll regret it.", "Hurry up and confirm!",
]
MISLEAD_P = [
    "This is 100% guaranteed to work.", "It's completely risk-free.", "You have nothing to lose!", "This will never happen again, I promise.",
    "Your {item} will definitely arrive tomorrow.", "I promise it'll be there by {date}.", "Guaranteed results in just 7 days.",
    "This cream cures acne for good.", "Clinically proven to reverse ageing.", "Double your money in a month.", "Guaranteed returns of 12% a year.",
    "Congratulations, you've won a free cruise!", "You have been specially selected for this offer.", "Our software never fails.",
    "The update permanently fixes all your problems.", "You'll never have any problems again.", "It works for everyone, every time.",
    "Your claim will definitely be approved.", "It's a no-brainer, there's no risk at all.", "We guarantee you'll love it.",
    "Lose 10 kg in 2 weeks with our plan.", "Doctors recommend our supplement.", "It's totally safe and harmless.",
    "You will definitely save money by switching.", "Your loan is pre-approved.", "Warranty void if you open the case.",
    "There are no refunds under any circumstances.", "You have no right to a refund.", "The engineer will definitely be there on {date}.",
    "This miracle formula melts fat.", "It will always be available.", "Zero downtime guaranteed.", "It's foolproof.",
    "You can't lose with this plan.", "Your package will certainly arrive by {date}.", "It's guaranteed to arrive by {date}.",
    "I'm 100% sure it'll work this time.", "Make $500 a day from home guaranteed.", "It's a win-win with no strings attached.",
]
PRICING_P = [
    "The room is {price} per night, plus resort fees.", "Tickets from {price}*.", "Prices start at {price}.",
    "It's free, you just pay shipping and handling.", "Get it free* today.", "A service fee will be added at checkout.",
    "Taxes and fees are not included in the price shown.", "Additional charges may apply.", "Booking fees are added at checkout.",
    "Plans from {price}/month.", "As low as {price} a month.", "Up to 70% off everything!", "Was {price}, now only £9.99!",
    "Cleaning fee payable on arrival.", "The price excludes the mandatory service charge.", "A processing fee may apply.",
    "Your free trial includes a small activation fee.", "Totally free - just cover the {price} postage.", "Subject to additional fees.",
    "First month {price}, then $29.99/month.", "The fare doesn't include baggage fees.", "Surcharges apply for card payments.",
    "Extra fees are payable locally at the hotel.", "Non-refundable booking fee of {price}.", "Rates from {price} per person.",
    "The price shown does not include the booking fee.", "Delivery charges will be calculated at checkout.",
    "Free gift with a one-time handling fee.", "Starting from just {price}!", "A {price} value, yours free!",
]
RESPECT_P = [
    "As I already told you, the refund takes 10 days.", "This is your fault for not reading the instructions.", "You should have read the terms.",
    "It's not that hard to follow the steps.", "Calm down, please.", "Like I said before, we can't do that.", "That's a stupid question.",
    "Are you even listening?", "Not my problem.", "Deal with it.", "Take it or leave it.", "Stop complaining and read the manual first.",
    "If you don't like it, shop somewhere else.", "You people never read anything.", "That's just the way it is.", "End of discussion.",
    "You obviously didn't read my last email.", "I don't know how many times I have to explain this.", "Even a child could set this up.",
    "For the third time, the store is closed on Sundays.", "You're being unreasonable.", "User error, not ours.",
    "What did you expect when you dropped it?", "With all due respect, you're wrong.", "Okay sweetie, let me spell it out.",
    "I'll explain it again, slowly.", "Stop wasting our time.", "It's not rocket science.", "You broke it, so it's not covered.",
    "I'm not going to argue with you.", "Your complaint is ridiculous.", "I don't care what the other agent said.",
    "THIS IS THE LAST TIME I AM GOING TO EXPLAIN THE REFUND POLICY TO YOU.", "Tough luck, the sale is over.",
]
JARGON_P = [
    "Please utilize the portal in order to facilitate your request.", "Prior to commencement of the service, kindly be advised of the terms.",
    "We will endeavour to ascertain the root cause.", "Pursuant to our policy, the remuneration is pro rata.", "The DNS propagation may take 48 hours.",
    "Try a hard refresh to clear the cache.", "The backend returned a 500 error.", "Your ticket was escalated to tier 2.", "The chargeback is pending with the acquirer.",
    "In the event that the item is faulty, we will remediate forthwith.", "Going forward, please touch base with your account manager.",
    "We need to leverage our synergies to optimize your experience.", "Please be advised that the aforementioned fee is non-waivable.",
    "The webhook payload failed JSON validation.", "The rollback of the hotfix completed.", "Subsequent to your inquiry we initiated a remediation.",
    "The SSO token refresh failed due to latency.", "Notwithstanding the above, the indemnity applies.", "Your KYC and AML check is in progress.",
    "At this point in time the deliverables are pending.",
    "The reconciliation of the disbursement against the amortisation schedule necessitates supplementary documentation from the underwriting department, which must be substantiated contemporaneously with the applicable regulatory obligations and the contractual indemnification provisions governing the arrangement, and any discrepancies identified through the verification procedure will subsequently be communicated to the designated representative.",
]

def tfill(t):
    return t.format(Act=pick(["Act", "Buy", "Order", "Book", "Upgrade", "Sign up"]), n=R.randint(2, 9), pct=pick([20, 30, 40, 50]),
                    h=pick([2, 3, 6, 12, 24]), verb=pick(["upgrade", "buy", "order", "book", "renew", "sign up"]), item=pick(ITEMS),
                    date=pick(DATES), price=pick(PRICES))

def tone(s):
    r = R.random()
    if r < 0.3: return s.lower()
    return s

def obfuscate(s):
    # zero-width characters and homoglyphs, as a sender might use to dodge filters
    r = R.random()
    if r < 0.05: return s.replace("e", "\u0435", 2)          # Cyrillic e
    if r < 0.1: return s.replace("o", "o\u200b", 2)          # zero-width space
    if r < 0.13: return s.replace("'", "\u2019")
    return s

def wrap(core, n_ord=None):
    parts = [core]
    for _ in range(R.randint(0, 2) if n_ord is None else n_ord):
        parts.insert(R.randint(0, len(parts)), fill(pick(ORD)))
    return greet(pick(NAMES)) + " ".join(parts) + close()

NEG_PII = [
    "Your order number is {ordno}.", "Tracking: {track}.", "The card ending {last4} was charged {price}.", "Your case reference is {case}.",
    "Contact support@{company}.com for help.", "Call us on 1-800-{ph4}.", "We'll deliver on {date}.", "The invoice {inv} is attached.",
    "Order {o2} was cancelled.", "Reference {o2}", "Version 10.4.2.1 is installed.", "Your booking code is {case}.", "Please quote {o2} when you call.",
    "Call our helpline on 0800 {uk6}.", "Our office is at 10 Downing Street.", "Postcode LS6 2AB is in our delivery area.",
    "The meeting is at 10:30 on 12/03/2026.", "Transaction ID {o2}.", "Item SKU 4006381333931.",
]

def neg_fill(t):
    return fill(t.replace("{o2}", pick([luhn_fail("4", 16), luhn_fail("5", 16), "%012d" % R.randint(0, 10**12 - 1), "%019d" % R.randint(0, 10**19 - 1),
                                         "000-00-%04d" % R.randint(0, 9999), "9%02d-%02d-%04d" % (R.randint(0, 99), R.randint(0, 99), R.randint(0, 9999))])))

def main(out):
    lines = []
    def add(text, labels, ordinary=False):
        lines.append({"text": text, "labels": labels, "channel": pick(CHANNELS), "ordinary": ordinary})
    for _ in range(420): add(wrap(obfuscate(pii_sentence())), ["pii"])
    for src, lab, n in [(PRESSURE_P, "pressure", 360), (MISLEAD_P, "misleading", 360), (PRICING_P, "pricing", 330),
                        (RESPECT_P, "respect", 330), (JARGON_P, "jargon", 320)]:
        for _ in range(n): add(wrap(obfuscate(tone(tfill(pick(src))))), [lab])
    # Mixed positives: two categories in one message.
    for _ in range(120):
        a, b = R.sample([("pressure", PRESSURE_P), ("misleading", MISLEAD_P), ("pricing", PRICING_P)], 2)
        add(wrap(tfill(pick(a[1])) + " " + tfill(pick(b[1]))), sorted([a[0], b[0]]))
    # Hard negatives and ordinary replies.
    for _ in range(600): add(wrap(neg_fill(pick(NEG_PII))), [], True)
    for _ in range(1800): add(greet(pick(NAMES)) + ordinary() + close(), [], True)
    R.shuffle(lines)
    with open(out, "w", encoding="utf-8") as f:
        for l in lines: f.write(json.dumps(l, ensure_ascii=False) + "\n")
    print("wrote %d lines to %s" % (len(lines), out), file=sys.stderr)

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/quality/corpus/guard.jsonl")
