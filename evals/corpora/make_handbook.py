"""Generate the binary documents of the handbook evaluation corpus (evals/corpora/handbook/).

The .md, .html and .txt documents are written by hand; this script writes the two binary ones:

- ``onboarding_programme.docx`` with python-docx (headings, paragraphs, a bulleted list, a table);
- ``safety_procedures.pdf``, three pages, drawn with pypdf's low-level objects (pypdf cannot lay
  out text, so lines are wrapped here with the Helvetica metrics of the PDF core fonts and
  written as a plain content stream in WinAnsi encoding; no extra dependency).

Everything in the corpus is invented: Merrow Sound Ferries, its people, routes and rules.
The generated files are committed, so the evaluation runs without regenerating them. Re-run
after editing the text below:

    .venv/bin/python evals/corpora/make_handbook.py

then check that every ``evidence`` in evals/handbook.yaml still occurs in the extracted text
(``.venv/bin/pytest tests/test_eval_sets.py``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

HERE = Path(__file__).resolve().parent / "handbook"
FIXED_TIME = dt.datetime(2024, 4, 2, 9, 0, 0)

# --- onboarding_programme.docx -----------------------------------------------------------

ONBOARDING_TITLE = "New Crew Onboarding Programme"

ONBOARDING_INTRO = [
    "Merrow Sound Ferries, People Team and Training. Applies to all new sea staff who join "
    "from 1 April 2024.",
    "Every new member of sea staff completes a two-week onboarding programme before being "
    "rostered on a sailing without supervision. The programme is run by Oskar Lindqvist-Hale, "
    "Training Coordinator, who is your first contact for anything in this document.",
]

BEFORE_DAY_ONE = [
    "your bank details and National Insurance number, for payroll;",
    "proof of your right to work in the UK;",
    "a valid Seafarer Medical Certificate (SMC), which must be renewed every two years;",
    "the names and telephone numbers of two emergency contacts.",
]

MODULES = [
    ("Module", "Length", "Delivered by", "When"),
    ("Company induction", "3 hours", "People Team", "Day 1 (morning)"),
    ("Basic Sea Survival (BSS)", "2 days", "Ederly Maritime College", "Days 2 and 3"),
    ("Fire prevention and fire fighting", "1 day", "Ederly Maritime College", "Day 4"),
    ("First aid at sea", "16 hours", "Vell Island First Responders", "Week 2"),
    ("Crowd management and passenger safety", "4 hours", "Rhys Penhallow", "Week 2"),
    ("Vessel familiarisation", "2 shifts per vessel", "Master of each vessel", "Week 2"),
]

ONBOARDING_SECTIONS = [
    (
        "Your first day",
        [
            "Report to reception at head office, 14 Quayside Row, at 08:30 on your first day. "
            "After the company induction you collect your uniform and safety equipment from "
            "the Stores in the Quay Building, Room 4, and have the photo taken for your ID pass.",
            "You will also meet your buddy: an experienced crew member who works alongside you "
            "for your first 10 shifts, shows you the routines on board and signs off each item "
            "of your familiarisation record.",
        ],
    ),
    (
        "Training modules",
        [
            "The table below lists the modules every new crew member completes. External "
            "courses are booked and paid for by the company; you are paid your normal rate for "
            "the time you spend on them.",
        ],
    ),
    (
        "Rules that apply during training",
        [
            "You may not sail as part of the safe-manning crew until you have passed Basic Sea "
            "Survival. If you have not passed it within 30 days of joining, your start on the "
            "rota is postponed until you do, and your manager will agree a new date with the "
            "Training Coordinator.",
            "Certificates from courses you took with a previous employer are accepted if they "
            "are less than five years old; bring the originals to your first day so the People "
            "Team can copy them.",
        ],
    ),
    (
        "Probation",
        [
            "New staff are on probation for six months. Your line manager meets you for a "
            "progress review after three months and again before the end of the probation "
            "period. During probation either side may end the employment with one week's notice; "
            "after probation the notice period is one month.",
            "If you need more time to meet the standard, probation can be extended once, by up "
            "to three months. The extension must be confirmed in writing by the People Manager.",
        ],
    ),
    (
        "After onboarding",
        [
            "Once the programme is complete, the Training Coordinator adds you to the rota and "
            "books your refresher training. Basic Sea Survival and fire fighting are refreshed "
            "every five years, and first aid every three years. Everyone also takes part in the "
            "drills on board described in the Passenger Safety and Emergency Procedures.",
        ],
    ),
]


def make_docx(path: Path) -> None:
    import docx

    document = docx.Document()
    properties = document.core_properties
    properties.title = ONBOARDING_TITLE
    properties.author = "Merrow Sound Ferries People Team"
    properties.created = FIXED_TIME
    properties.modified = FIXED_TIME
    properties.last_modified_by = "People Team"
    properties.revision = 1

    document.add_heading(ONBOARDING_TITLE, level=1)
    for text in ONBOARDING_INTRO:
        document.add_paragraph(text)
    document.add_heading("Before your first day", level=2)
    document.add_paragraph(
        "Send the People Team the following at least five working days before you start:"
    )
    for item in BEFORE_DAY_ONE:
        document.add_paragraph(item, style="List Bullet")
    for heading, paragraphs in ONBOARDING_SECTIONS:
        document.add_heading(heading, level=2)
        for text in paragraphs:
            document.add_paragraph(text)
        if heading == "Training modules":
            table = document.add_table(rows=0, cols=len(MODULES[0]))
            table.style = "Table Grid"
            for row in MODULES:
                cells = table.add_row().cells
                for cell, value in zip(cells, row, strict=True):
                    cell.text = value
    document.save(str(path))


# --- safety_procedures.pdf ---------------------------------------------------------------

SAFETY_TITLE = "Passenger Safety and Emergency Procedures"

# Each page: a list of ("h", heading) / ("p", paragraph) / ("li", list item) blocks.
SAFETY_PAGES: list[list[tuple[str, str]]] = [
    [
        ("t", SAFETY_TITLE),
        (
            "p",
            "Document SP-07, revision 3, issued 15 January 2024. Approved by Rhys Penhallow, "
            "Senior Passenger Safety Officer, and Tomasz Kerrow, Operations Manager. This "
            "document applies to every sailing of Merrow Sound Ferries.",
        ),
        ("h", "1. Roles and responsibilities"),
        (
            "p",
            "The Master of each vessel has overall responsibility for the safety of everyone on "
            "board. Every sailing carries at least one Passenger Safety Officer (PSO), whose job "
            "is to look after passengers in an emergency, count them at the muster stations and "
            "report to the bridge. On the MV Corran Belle, two PSOs are on duty on every sailing "
            "with more than 250 passengers on board.",
        ),
        (
            "p",
            "All crew hold a current Basic Sea Survival certificate. A crew member who notices "
            "anything unsafe, on board or on the quay, must tell the Master or the PSO at once.",
        ),
        ("h", "2. Before departure"),
        ("p", "Before the gangway is lifted, the PSO on duty checks that:"),
        ("li", "the number of passengers on the ticketing system is below the vessel's limit;"),
        ("li", "all external doors and the bow and stern doors are closed and locked;"),
        ("li", "the vehicle deck is clear of passengers and every vehicle has its handbrake on;"),
        ("li", "the lifebuoys and the muster station signs are in place and undamaged."),
        (
            "p",
            "The safety announcement is made within five minutes of departure on every sailing; "
            "on the Vell Island route it is followed by a short safety video in the lounges.",
        ),
        ("h", "3. Weather limits"),
        (
            "p",
            "Sailings are suspended when the mean wind speed at the harbour entrance exceeds the "
            "limit for the vessel: 40 knots for the MV Corran Belle, 30 knots for the MV Saltwind "
            "and 22 knots for the MV Little Heron. The MV Little Heron also stays in port when "
            "the significant wave height is above 1.5 metres. The decision to suspend or resume "
            "sailings is made by the Master together with the duty Operations Controller, who "
            "tells the ticket offices.",
        ),
    ],
    [
        ("h", "4. General emergency and muster"),
        (
            "p",
            "The general emergency alarm is seven short blasts followed by one long blast on "
            "the ship's whistle and alarm bells. When it sounds:",
        ),
        ("li", "1. The Master makes an announcement giving the nature of the emergency."),
        (
            "li",
            "2. Crew go to their muster stations, put on their life jackets and open the lockers.",
        ),
        (
            "li",
            "3. PSOs guide passengers to the nearest muster station and help them put on life "
            "jackets.",
        ),
        (
            "li",
            "4. Each PSO counts the passengers at the station and compares the count with the "
            "ticketing system.",
        ),
        ("li", "5. The count is reported to the bridge by radio within 10 minutes of the alarm."),
        (
            "p",
            "No one leaves the muster station until the Master gives the order. Passengers with "
            "reduced mobility are helped to the muster station by a named crew member; the MV "
            "Corran Belle carries two evacuation chairs on deck 2 for passengers who cannot use "
            "the stairs.",
        ),
        ("h", "5. Person overboard"),
        ("p", "Anyone who sees a person fall into the water must:"),
        ("li", '1. Shout "Man overboard" and the side, port or starboard, as loudly as possible.'),
        ("li", "2. Throw the nearest lifebuoy towards the person in the water."),
        ("li", "3. Keep pointing at the person and never take their eyes off them."),
        ("li", "4. Tell the bridge, who press the MOB button on the navigation system."),
        (
            "p",
            "The rescue boat is launched within five minutes on the MV Corran Belle and the MV "
            "Saltwind. The MV Little Heron has no rescue boat: her Master turns the vessel and "
            "recovers the person over the stern platform, and asks the coastguard for help.",
        ),
        ("h", "6. Life-saving appliances"),
        (
            "p",
            "The MV Corran Belle carries 460 adult and 60 child life jackets and four liferafts "
            "for 150 people each. The MV Saltwind carries 200 adult and 24 child life jackets "
            "and two liferafts for 100 people each. The MV Little Heron carries 110 adult and "
            "16 child life jackets and one liferaft for 100 people. Infant life jackets are "
            "kept on every vessel at the PSO station.",
        ),
    ],
    [
        ("h", "7. Drills"),
        (
            "p",
            "Every crew takes part in an abandon-ship drill at least once a month and a fire "
            "drill every two weeks. Drills are never held with passengers on board. The Master "
            "records each drill in the Drill Log, which is kept on board for three years.",
        ),
        ("h", "8. Reporting incidents"),
        (
            "p",
            "Every incident, including a near miss in which nobody was hurt, is reported on Form "
            "IR-1 within 24 hours. An injury to a passenger is reported to the Senior PSO "
            "immediately by radio. Serious incidents, such as a collision, a grounding, a fire or "
            "a person overboard, are also reported to the Marine Accident Notification Desk "
            "(MAND) within 2 hours.",
        ),
        (
            "p",
            "Completed IR-1 forms go to the Senior PSO, who reviews them every week with the "
            "Operations Manager and keeps them for six years.",
        ),
        ("h", "9. Alcohol and drugs"),
        (
            "p",
            "The company has a zero-tolerance policy. Crew must not drink alcohol in the 10 "
            "hours before a shift, and random breath tests are carried out on board at least "
            "once a month. A crew member who fails a test is stood down at once and may not "
            "sail again until cleared by the Operations Manager.",
        ),
        ("h", "10. Dangerous goods"),
        (
            "p",
            "Passengers may not bring fuel cans, gas cylinders larger than 5 kg or fireworks on "
            "board as foot passengers. Vehicles carrying dangerous goods travel only on the 06:40 "
            "sailing from Port Ederly, when no more than 50 passengers are booked, and must be "
            "declared when the booking is made.",
        ),
        ("h", "11. Review"),
        (
            "p",
            "This document is reviewed every year by the Senior PSO, and after any serious "
            "incident. The next scheduled review is due in January 2025.",
        ),
    ],
]

PAGE_WIDTH, PAGE_HEIGHT = 595.0, 842.0  # A4, points
MARGIN_LEFT, MARGIN_TOP, MARGIN_BOTTOM = 64.0, 72.0, 64.0
TEXT_WIDTH = PAGE_WIDTH - 2 * MARGIN_LEFT
STYLES = {  # block kind -> (font resource, size, leading, space before)
    "t": ("/F2", 16.0, 20.0, 0.0),
    "h": ("/F2", 12.0, 16.0, 10.0),
    "p": ("/F1", 10.5, 14.0, 6.0),
    "li": ("/F1", 10.5, 14.0, 2.0),
}


def _char_widths(font: str) -> dict[str, float]:
    try:  # pypdf ships the Adobe core-14 metrics; fall back to an average width.
        from pypdf._codecs.core_font_metrics import CORE_FONT_METRICS

        return dict(CORE_FONT_METRICS[font].character_widths)
    except (ImportError, KeyError, AttributeError):
        return {}


def _wrap(text: str, width: float, size: float, widths: dict[str, float]) -> list[str]:
    def measure(line: str) -> float:
        default = widths.get("default", 556)
        return sum(widths.get(char, default) for char in line) * size / 1000

    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if current and measure(candidate) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def _pdf_string(text: str) -> bytes:
    data = text.encode("cp1252")  # WinAnsiEncoding, as declared on the fonts
    return b"(" + data.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _page_stream(blocks: list[tuple[str, str]], number: int, total: int) -> bytes:
    metrics = {"/F1": _char_widths("Helvetica"), "/F2": _char_widths("Helvetica-Bold")}
    out: list[bytes] = []
    y = PAGE_HEIGHT - MARGIN_TOP
    for kind, text in blocks:
        font, size, leading, before = STYLES[kind]
        indent = 14.0 if kind == "li" else 0.0
        if kind == "li" and not text[:1].isdigit():
            text = "\u2022 " + text
        y -= before
        for line in _wrap(text, TEXT_WIDTH - indent, size, metrics[font]):
            y -= leading
            if y < MARGIN_BOTTOM:
                raise ValueError(f"page {number} overflows; move a block to the next page")
            x = MARGIN_LEFT + indent
            out.append(
                b"BT %s %.1f Tf %.2f %.2f Td %s Tj ET"
                % (font.encode(), size, x, y, _pdf_string(line))
            )
    footer = f"SP-07 {SAFETY_TITLE}, revision 3 - page {number} of {total}"
    out.append(b"BT /F1 8.0 Tf %.2f 36.00 Td %s Tj ET" % (MARGIN_LEFT, _pdf_string(footer)))
    return b"\n".join(out) + b"\n"


def make_pdf(path: Path) -> None:
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()

    def font(base: str) -> DictionaryObject:
        return DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/" + base),
                NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
            }
        )

    fonts = DictionaryObject(
        {
            NameObject("/F1"): writer._add_object(font("Helvetica")),
            NameObject("/F2"): writer._add_object(font("Helvetica-Bold")),
        }
    )
    total = len(SAFETY_PAGES)
    for number, blocks in enumerate(SAFETY_PAGES, start=1):
        page = writer.add_blank_page(width=PAGE_WIDTH, height=PAGE_HEIGHT)
        stream = DecodedStreamObject()
        stream.set_data(_page_stream(blocks, number, total))
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
        page[NameObject("/Contents")] = writer._add_object(stream)
    writer.add_metadata(
        {
            "/Title": SAFETY_TITLE,
            "/Author": "Merrow Sound Ferries",
            "/CreationDate": "D:20240115090000Z",
        }
    )
    with open(path, "wb") as handle:
        writer.write(handle)


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    make_docx(HERE / "onboarding_programme.docx")
    make_pdf(HERE / "safety_procedures.pdf")
    for name in ("onboarding_programme.docx", "safety_procedures.pdf"):
        print(f"wrote {HERE / name} ({(HERE / name).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
