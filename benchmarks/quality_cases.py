"""The labelled cases of `benchmarks/quality.py`, written for openbrace (not from a data set).

TICKETS: 40 support tickets with the intent and urgency a support desk would give
them. The labels follow two written rules, so a reader can check them:

- intent: billing (money: charges, refunds, invoices, plans' prices), technical (the
  product misbehaves: errors, crashes, slowness), account (who the user is: log-in,
  password, e-mail, profile, deletion), other (anything else: praise, questions
  about the company, feature wishes).
- urgency: high (money lost now, locked out, service down, a deadline today),
  medium (something broken with a workaround, or soon), low (a question, a wish).

EXTRACTIONS: 12 messages with the fields a person would copy out of them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EXTRACTIONS", "EXTRACTION_SCHEMA", "TICKETS", "TICKET_SCHEMA"]

TICKET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "intent": {
            "type": "string",
            "enum": ["billing", "technical", "account", "other"],
            "description": "billing for charges, refunds, invoices and prices; technical for "
            "errors, crashes and slowness; account for log-in, password, e-mail, profile "
            "and deletion; other for anything else",
        },
        "urgency": {
            "type": "string",
            "enum": ["low", "medium", "high"],
            "description": "high when money is lost, the customer is locked out or the "
            "service is down; medium when something is broken but can wait; low for "
            "questions and wishes",
        },
        "reply": {
            "type": "string",
            "maxLength": 160,
            "description": "a short, polite reply to the customer saying what happens next",
        },
    },
    "required": ["intent", "urgency", "reply"],
    "additionalProperties": False,
}

# (ticket, intent, urgency)
TICKETS: list[tuple[str, str, str]] = [
    # billing
    ("I was charged twice for my subscription this month. Please refund one.", "billing", "high"),
    ("Your payment page took my money but my plan still says Free.", "billing", "high"),
    ("My invoice for March shows the wrong VAT number. Can you correct it?", "billing", "low"),
    ("How much does the Team plan cost per user if we pay yearly?", "billing", "low"),
    (
        "I cancelled last month but you charged my card again today. I want my money back now.",
        "billing",
        "high",
    ),
    (
        "Could you send me a PDF receipt for my last payment? I need it for expenses.",
        "billing",
        "low",
    ),
    (
        "The discount code SPRING20 was not applied at checkout, I paid full price.",
        "billing",
        "medium",
    ),
    ("My card expires next month, how do I update the payment method?", "billing", "low"),
    (
        "You charged me 99 euros instead of 9.90. This is a mistake, please fix it today.",
        "billing",
        "high",
    ),
    ("Do you offer a discount for non-profit organisations?", "billing", "low"),
    # technical
    ("The app crashes every time I open the settings page.", "technical", "medium"),
    ("I get error 500 when I upload a file larger than 10 MB.", "technical", "medium"),
    ("Your whole website is down, none of my team can work. Please help!", "technical", "high"),
    (
        "Exports to CSV have been very slow since yesterday, about five minutes each.",
        "technical",
        "medium",
    ),
    ("The dark mode makes the buttons on the dashboard invisible.", "technical", "low"),
    ("Sync stopped working on my phone; the laptop app still works fine.", "technical", "medium"),
    (
        "All our API calls return 503 since 9am and our shop cannot take orders.",
        "technical",
        "high",
    ),
    (
        "Notifications arrive twice on Android. Not a big deal but a bit annoying.",
        "technical",
        "low",
    ),
    ("The PDF preview shows blank pages for documents with images.", "technical", "medium"),
    (
        "After the update the app does not start at all on Windows 11. I have a demo in an hour.",
        "technical",
        "high",
    ),
    # account
    ("How do I change the email address on my account?", "account", "low"),
    ("Please delete my account and all my data.", "account", "medium"),
    ("I forgot my password and the reset link never arrives.", "account", "high"),
    ("Someone logged into my account from another country. Lock it please!", "account", "high"),
    ("Can I change my username? I made a typo when I signed up.", "account", "low"),
    (
        "I want to add a second admin to our company account. Where is that setting?",
        "account",
        "low",
    ),
    ("My two-factor phone was stolen and I cannot log in any more.", "account", "high"),
    ("How can I merge my two accounts into one?", "account", "low"),
    (
        "The verification email for my new account has not arrived after an hour.",
        "account",
        "medium",
    ),
    ("Please change the name on my profile from Jon to John.", "account", "low"),
    # other
    ("Just wanted to say your support team was great last week. Thanks!", "other", "low"),
    ("Are you hiring backend developers in Berlin?", "other", "low"),
    ("It would be nice to have a calendar view. Any plans for that?", "other", "low"),
    ("Where can I find your privacy policy?", "other", "low"),
    ("Do you have an office in Canada I could visit?", "other", "low"),
    ("I'm writing a blog post about your product, can I use your logo?", "other", "low"),
    ("What are your support hours during the holidays?", "other", "low"),
    ("Could you add Portuguese to the list of languages?", "other", "low"),
    (
        "I'd like to partner with you for a webinar next month. Who should I contact?",
        "other",
        "low",
    ),
    ("Is your company carbon neutral?", "other", "low"),
]

EXTRACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "the customer's full name"},
        "email": {"type": "string", "description": "the customer's e-mail address"},
        "order_id": {"type": "string", "description": "the order number, as written"},
        "product": {"type": "string", "description": "the product the message is about"},
        "quantity": {"type": "integer", "description": "how many items"},
    },
    "required": ["name", "email", "order_id", "product", "quantity"],
    "additionalProperties": False,
}

# (message, expected fields)
EXTRACTIONS: list[tuple[str, dict[str, Any]]] = [
    (
        "Hello, this is Maria Lopez (maria.lopez@example.com). Order A-1042 arrived with "
        "3 coffee mugs but one is broken.",
        {
            "name": "Maria Lopez",
            "email": "maria.lopez@example.com",
            "order_id": "A-1042",
            "product": "coffee mug",
            "quantity": 3,
        },
    ),
    (
        "Hi, I ordered 2 desk lamps (order 55812) and got none. Tom Becker, tom@becker.de",
        {
            "name": "Tom Becker",
            "email": "tom@becker.de",
            "order_id": "55812",
            "product": "desk lamp",
            "quantity": 2,
        },
    ),
    (
        "Order B-77 from Aiko Tanaka: 1 keyboard, wrong layout. Reply to aiko.t@mail.jp please.",
        {
            "name": "Aiko Tanaka",
            "email": "aiko.t@mail.jp",
            "order_id": "B-77",
            "product": "keyboard",
            "quantity": 1,
        },
    ),
    (
        "My name is Peter Novak and I need to return 4 chairs from order 2024-339. "
        "Contact: p.novak@firm.cz",
        {
            "name": "Peter Novak",
            "email": "p.novak@firm.cz",
            "order_id": "2024-339",
            "product": "chair",
            "quantity": 4,
        },
    ),
    (
        "Where is my order #9001? It was 5 notebooks. - Lena Schmidt, lena.schmidt@web.de",
        {
            "name": "Lena Schmidt",
            "email": "lena.schmidt@web.de",
            "order_id": "9001",
            "product": "notebook",
            "quantity": 5,
        },
    ),
    (
        "Hi team, Omar Haddad here (omar@haddad.io). I want to cancel order X-5 for 10 pens.",
        {
            "name": "Omar Haddad",
            "email": "omar@haddad.io",
            "order_id": "X-5",
            "product": "pen",
            "quantity": 10,
        },
    ),
    (
        "Sarah Connor, sarah.connor@skynet.com: the 2 monitors in order M-300 flicker.",
        {
            "name": "Sarah Connor",
            "email": "sarah.connor@skynet.com",
            "order_id": "M-300",
            "product": "monitor",
            "quantity": 2,
        },
    ),
    (
        "Dear support, the 8 tea cups in order 7781 came without saucers. Regards, "
        "Ingrid Berg (ingrid.berg@post.no)",
        {
            "name": "Ingrid Berg",
            "email": "ingrid.berg@post.no",
            "order_id": "7781",
            "product": "tea cup",
            "quantity": 8,
        },
    ),
    (
        "Order Z-12: 1 backpack, zipper broken after a day. Carlos Diaz, carlos.diaz@correo.mx",
        {
            "name": "Carlos Diaz",
            "email": "carlos.diaz@correo.mx",
            "order_id": "Z-12",
            "product": "backpack",
            "quantity": 1,
        },
    ),
    (
        "This is Emma Wilson. Please send an invoice for order 4410 (3 office desks) to "
        "accounts@wilson.co.uk",
        {
            "name": "Emma Wilson",
            "email": "accounts@wilson.co.uk",
            "order_id": "4410",
            "product": "office desk",
            "quantity": 3,
        },
    ),
    (
        "Hi, Raj Patel, raj.patel@inbox.in. I'd like to add 2 more phone cases to order P-88.",
        {
            "name": "Raj Patel",
            "email": "raj.patel@inbox.in",
            "order_id": "P-88",
            "product": "phone case",
            "quantity": 2,
        },
    ),
    (
        "Order 31337 (7 water bottles) never shipped. Anna Kowalska, anna.k@poczta.pl",
        {
            "name": "Anna Kowalska",
            "email": "anna.k@poczta.pl",
            "order_id": "31337",
            "product": "water bottle",
            "quantity": 7,
        },
    ),
]
