#!/usr/bin/env python
"""Generate the spanqa sample extractive-QA dataset (SQuAD v2.0 format).

All passages and questions below were written originally for spanqa; they are
not taken from any existing dataset. The data is licensed with the project
(Apache-2.0).

Each passage is a dict with ``title``, ``lang``, ``split`` and ``context``,
plus ``qas``: a list of tuples

    (question, answer)             answer must occur exactly once in context
    (question, answer, occurrence) 0-based index of the occurrence to use
    (question, None)               unanswerable (SQuAD v2 ``is_impossible``)

Answer offsets are computed here, never written by hand.

Usage:  python scripts/make_sample_data.py [OUTPUT_DIR]
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

PASSAGES = [
    {
        "title": "Karrow Point Lighthouse",
        "lang": "en",
        "split": "train",
        "context": (
            "The Karrow Point Lighthouse stands on a granite headland at the northern end of Brenmoor Bay. "
            "It was completed in 1868 by the engineer Thomas Avery, who designed the tower to withstand "
            "winter storms from the open ocean. The tower is 31 metres tall and is painted with three red "
            "bands. Its original oil lamp was replaced by an electric lamp in 1927, and the light was fully "
            "automated in 1989. The last resident keeper, Margaret Ellwood, lived in the cottage beside the "
            "tower for twenty-two years. Today the cottage houses a small museum run by volunteers from the "
            "Brenmoor Heritage Society. The beam flashes white every ten seconds and can be seen from about "
            "18 nautical miles away on a clear night."
        ),
        "qas": [
            ("Who designed the Karrow Point Lighthouse?", "Thomas Avery"),
            ("How tall is the lighthouse tower?", "31 metres"),
            ("In what year was the light fully automated?", "1989"),
            ("Who was the last resident keeper?", "Margaret Ellwood"),
            ("How many steps lead to the top of the tower?", None),
        ],
    },
    {
        "title": "Millbrook Bakery sourdough",
        "lang": "en",
        "split": "train",
        "context": (
            "At the Millbrook Bakery, head baker Rosa Lindqvist begins each batch of sourdough the evening "
            "before baking. She feeds the starter, which the bakery has kept alive since 2011, with equal "
            "weights of rye flour and water. The main dough uses 78 percent hydration, meaning 780 grams of "
            "water for every kilogram of flour. After mixing flour and water, the dough rests for forty "
            "minutes before salt is added. The loaves are shaped by hand, placed in cane baskets, and left to "
            "proof overnight in a cold room kept at 4 degrees Celsius. In the morning they bake for 45 minutes "
            "in a stone-deck oven. The bakery sells roughly 300 loaves on a typical Saturday."
        ),
        "qas": [
            ("Who is the head baker at the Millbrook Bakery?", "Rosa Lindqvist"),
            ("Since what year has the bakery kept its starter alive?", "2011"),
            ("What kind of flour is used to feed the starter?", "rye flour"),
            ("How much does the bakery charge for a sourdough loaf?", None),
        ],
    },
    {
        "title": "Solven River Delta",
        "lang": "en",
        "split": "train",
        "context": (
            "The Solven River Delta covers about 2,400 square kilometres where the Solven River meets the Gulf "
            "of Tarris. The river splits into seven main channels, the largest of which is the Orran Channel. "
            "Each year the river carries an estimated 40 million tonnes of sediment to the coast, slowly "
            "extending the shoreline seaward. The delta's wetlands shelter more than 250 species of birds, "
            "including the rare grey-crested heron. Rice farming dominates the inland districts, while fishing "
            "villages line the outer islands. Since 2004 the delta has been protected as a regional nature "
            "reserve, and a research station at the town of Merrow monitors water levels and salinity."
        ),
        "qas": [
            ("What is the largest channel of the Solven River Delta?", "the Orran Channel"),
            ("Into which body of water does the Solven River flow?", "the Gulf of Tarris"),
            ("In which town is the research station located?", "Merrow"),
            ("How many people live in the Solven River Delta?", None),
            ("How long is the Solven River?", None),
        ],
    },
    {
        "title": "Halden Street Chess Club",
        "lang": "en",
        "split": "train",
        "context": (
            "The Halden Street Chess Club was founded in 1952 by a group of railway workers who played during "
            "their lunch breaks. It now meets every Tuesday and Thursday evening in the upstairs room of the "
            "Halden Public Library. The club has 64 members, the youngest of whom is nine years old. Its "
            "strongest player, Irina Kovač, holds a rating of 2315 and won the regional championship in 2021. "
            "Each January the club organises the Halden Winter Open, a five-round Swiss tournament that "
            "attracts players from neighbouring towns. Beginners can borrow sets and clocks, and a free lesson "
            "is offered on the first Thursday of every month."
        ),
        "qas": [
            ("When was the Halden Street Chess Club founded?", "1952"),
            ("What rating does Irina Kovač hold?", "2315"),
            ("How many rounds does the Halden Winter Open have?", "five"),
            ("Who is the president of the chess club?", None),
            ("How much is the annual membership fee?", None),
        ],
    },
    {
        "title": "Glenbarrow Light Railway",
        "lang": "en",
        "split": "dev",
        "context": (
            "The Glenbarrow Light Railway runs for 14 kilometres between the market town of Ashby Cross and "
            "the quarry village of Glenbarrow. Built in 1897 to carry slate, it uses a narrow gauge of 610 "
            "millimetres. Passenger services ended in 1951, but a volunteer society reopened the line to "
            "visitors in 1978. The railway's oldest working locomotive is a tank engine named Bluebell, built "
            "in Leeds in 1903. Trains run daily from April to October, and the journey takes about 55 minutes "
            "in each direction, with a stop at Pennick Halt for walkers heading into the hills."
        ),
        "qas": [
            ("How long is the Glenbarrow Light Railway?", "14 kilometres"),
            ("What is the gauge of the railway?", "610 millimetres"),
            ("What is the name of the oldest working locomotive?", "Bluebell"),
            ("How much does a return ticket cost?", None),
        ],
    },
    {
        "title": "Mount Ketra Volcano Observatory",
        "lang": "en",
        "split": "train",
        "context": (
            "The Mount Ketra Volcano Observatory sits 6 kilometres from the summit crater on the volcano's "
            "eastern flank. Established in 1961 after a damaging eruption, it operates a network of 23 "
            "seismometers and four GPS stations. Scientists also measure sulphur dioxide emissions twice a "
            "week using a portable spectrometer. The observatory issues alerts on a four-level colour scale, "
            "from green to red. In March 2016, a swarm of over 1,200 small earthquakes led the team to raise "
            "the alert to orange for eleven days. The current director, Dr. Paulo Senna, previously worked on "
            "volcanoes in Iceland and Chile."
        ),
        "qas": [
            ("How far is the observatory from the summit crater?", "6 kilometres"),
            ("Who is the current director of the observatory?", "Dr. Paulo Senna"),
            ("For how long was the alert raised to orange in 2016?", "eleven days"),
            ("How high is Mount Ketra?", None),
        ],
    },
    {
        "title": "Beekeeping near Lunde",
        "lang": "en",
        "split": "train",
        "context": (
            "Tomas Berg keeps twelve hives on the edge of an apple orchard near the village of Lunde. He uses "
            "Langstroth hives, each with ten frames in the brood box. In spring the colonies build up quickly "
            "on apple and dandelion blossom, and by July a strong hive can hold around 50,000 bees. Berg "
            "harvests honey twice a year, in late June and early September, and a good season yields about 25 "
            "kilograms per hive. To control varroa mites he treats the colonies with oxalic acid in December, "
            "when there is little brood. His light spring honey crystallises within a few weeks, so he sells "
            "much of it as creamed honey at the Saturday market in Lunde."
        ),
        "qas": [
            ("How many hives does Tomas Berg keep?", "twelve"),
            ("What type of hives does Berg use?", "Langstroth hives"),
            ("What does Berg use to treat varroa mites?", "oxalic acid"),
            ("How many queen bees has Berg raised himself?", None),
            ("What price does Berg charge for creamed honey?", None),
        ],
    },
    {
        "title": "Corvel Museum of Maps",
        "lang": "en",
        "split": "train",
        "context": (
            "The Corvel Museum of Maps opened in 1994 in a former customs house on the harbour front of Port "
            "Alder. Its collection holds about 8,500 maps, charts, and globes, the oldest being a hand-drawn "
            "sea chart from 1583. The museum's most visited room is the Navigator's Gallery, which displays "
            "instruments such as astrolabes, sextants, and a brass marine chronometer. Conservation work takes "
            "place in a climate-controlled studio on the second floor, where humidity is held at 50 percent. "
            "Admission is free on the first Sunday of every month. The museum's founder, the collector Hendrik "
            "Sauvage, donated the first 2,000 items."
        ),
        "qas": [
            ("What building does the museum occupy?", "a former customs house"),
            ("What is the oldest item in the collection?", "a hand-drawn sea chart from 1583"),
            ("Which room of the museum is most visited?", "the Navigator's Gallery"),
            ("Who founded the museum?", "Hendrik Sauvage"),
            ("Who is the current curator of the museum?", None),
        ],
    },
    {
        "title": "Repairing a bicycle puncture",
        "lang": "en",
        "split": "train",
        "context": (
            "Fixing a flat tyre on a bicycle takes about fifteen minutes with the right tools. First, release "
            "the brake if necessary and remove the wheel from the frame. Use two plastic tyre levers to lift "
            "one side of the tyre off the rim, then pull out the inner tube. Inflate the tube slightly and "
            "listen or feel for escaping air to find the hole. Before patching, rub the area with sandpaper, "
            "apply a thin layer of rubber cement, and wait about three minutes until it turns dull. Press the "
            "patch firmly in place. Always run your fingers around the inside of the tyre to remove the thorn "
            "or glass that caused the puncture, otherwise the new tube will fail again."
        ),
        "qas": [
            ("How long does fixing a flat tyre take?", "about fifteen minutes"),
            ("What should the area around the hole be rubbed with?", "sandpaper"),
            ("How long should you wait after applying rubber cement?", "about three minutes"),
            ("To what pressure should the repaired tyre be inflated?", None),
        ],
    },
    {
        "title": "Riverton City Council bus lane vote",
        "lang": "en",
        "split": "dev",
        "context": (
            "The Riverton City Council has eleven members, elected every four years from five wards plus a "
            "citywide list. At its meeting on 14 May 2023, the council voted 8 to 3 to approve a new bus lane "
            "along Cannery Road. The project is expected to cost 6.2 million dollars and will be funded partly "
            "by a regional transport grant. Mayor Delia Okafor said the lane would cut travel times for the "
            "Route 9 bus by about seven minutes at rush hour. Councillor James Whitlow, who voted against the "
            "plan, argued that shops on Cannery Road would lose parking spaces. Construction is scheduled to "
            "begin in the spring of 2024."
        ),
        "qas": [
            ("What was the result of the vote on the bus lane?", "8 to 3"),
            ("How much is the bus lane expected to cost?", "6.2 million dollars"),
            ("Who is the mayor of Riverton?", "Delia Okafor"),
            ("Which bus route will benefit from the new lane?", "Route 9"),
            ("How many parking spaces will be removed on Cannery Road?", None),
        ],
    },
    {
        "title": "Fernhill Astronomy Club",
        "lang": "en",
        "split": "train",
        "context": (
            "The Fernhill Astronomy Club owns a small observatory on Crowder Hill, about 20 kilometres from the "
            "nearest city lights. Its main instrument is a 40-centimetre reflecting telescope, installed in "
            "2009 with money raised by members. The club holds public viewing nights on the second Saturday of "
            "each month, weather permitting. In August the members organise a camp to watch the Perseid meteor "
            "shower, which can produce up to 60 meteors an hour at its peak. In 2018 Leo Marsh, then 16 years "
            "old, discovered an asteroid using the club's robotic camera. The asteroid was later named Crowder "
            "after the hill."
        ),
        "qas": [
            ("What size is the club's main telescope?", "40-centimetre"),
            ("Which meteor shower do the members watch in August?", "the Perseid meteor shower"),
            ("Who discovered an asteroid with the club's camera?", "Leo Marsh"),
            ("What name was given to the asteroid?", "Crowder", 1),
            ("How many members does the Fernhill Astronomy Club have?", None),
        ],
    },
    {
        "title": "Hallam Tea Estate",
        "lang": "en",
        "split": "train",
        "context": (
            "The Hallam Tea Estate lies on steep slopes between 1,300 and 1,900 metres above sea level. Its "
            "bushes are pruned to waist height so that pickers can reach the young shoots easily. Skilled "
            "pickers pluck only two leaves and a bud, gathering about 25 kilograms of fresh leaf on a good day. "
            "Roughly four kilograms of fresh leaf are needed to make one kilogram of finished black tea. After "
            "withering for 14 hours, the leaves are rolled, oxidised, and dried in hot air. The estate's best "
            "tea comes from the first flush, harvested in early spring. Its factory manager, Anil Mehra, has "
            "worked at Hallam since 1998."
        ),
        "qas": [
            ("At what altitude does the Hallam Tea Estate lie?", "between 1,300 and 1,900 metres"),
            ("What do skilled pickers pluck?", "two leaves and a bud"),
            ("Who is the factory manager at Hallam?", "Anil Mehra"),
            ("How many pickers does the estate employ?", None),
        ],
    },
    {
        "title": "Kelmouth fishing village",
        "lang": "en",
        "split": "train",
        "context": (
            "Kelmouth is a fishing village of about 600 people on a sheltered inlet of the western coast. Its "
            "harbour wall, built from local sandstone in 1821, protects a fleet of eighteen small boats. Most "
            "crews fish for crab and lobster using pots, which are hauled every two days in good weather. The "
            "village's fish market opens at five in the morning, and buyers arrive from restaurants as far away "
            "as the capital. Each August Kelmouth holds the Blessing of the Boats, when the fleet is decorated "
            "with flags and sails out past the harbour mouth. The old net loft beside the slipway has been "
            "turned into a café."
        ),
        "qas": [
            ("What was the harbour wall built from?", "local sandstone"),
            ("How many boats are in the Kelmouth fleet?", "eighteen"),
            ("At what time does the fish market open?", "five in the morning"),
            ("What festival does Kelmouth hold each August?", "the Blessing of the Boats"),
            ("What is the name of the café in the old net loft?", None),
        ],
    },
    {
        "title": "Tarn 3.0 release",
        "lang": "en",
        "split": "train",
        "context": (
            "Version 3.0 of the Tarn image editor was released on 2 February 2024 after eighteen months of "
            "development. The release introduces a non-destructive layer system and replaces the old plugin "
            "interface with one based on WebAssembly. Startup time on a typical laptop has dropped from 4.1 "
            "seconds to 1.3 seconds, according to the project's benchmarks. Support for 32-bit Windows has been "
            "removed. The project is maintained by a core team of nine developers, led by Sara Nkemelu, and "
            "received contributions from 214 volunteers for this release. Tarn is distributed under the GNU "
            "General Public License, and the next minor version, 3.1, is planned for the summer."
        ),
        "qas": [
            ("When was Tarn 3.0 released?", "2 February 2024"),
            ("What technology is the new plugin interface based on?", "WebAssembly"),
            ("What is the startup time of Tarn 3.0 on a typical laptop?", "1.3 seconds"),
            ("Who leads the Tarn core team?", "Sara Nkemelu"),
            ("How many times was Tarn 3.0 downloaded in its first week?", None),
        ],
    },
    {
        "title": "Orlen Valley Marathon",
        "lang": "en",
        "split": "train",
        "context": (
            "The Orlen Valley Marathon is run each October on a course that follows the river from the town of "
            "Haskett to the finish line in Orlen Park. The first race, in 1987, had only 140 runners; the 2023 "
            "edition had 5,600 finishers. The men's course record of 2:09:41 was set in 2019 by Daniel Kiprop, "
            "and the women's record of 2:24:15 belongs to Ana Ferreira. Water stations are placed every five "
            "kilometres, and the course closes six and a half hours after the start. Because the route drops "
            "about 90 metres in total, it is popular with runners aiming for a personal best."
        ),
        "qas": [
            ("In which town does the Orlen Valley Marathon start?", "Haskett"),
            ("Who holds the men's course record?", "Daniel Kiprop"),
            ("What is the women's course record?", "2:24:15"),
            ("In what year did Ana Ferreira set the women's record?", None),
            ("How much is the entry fee for the marathon?", None),
        ],
    },
    {
        "title": "Coral reefs",
        "lang": "en",
        "split": "dev",
        "context": (
            "Coral reefs are built by tiny animals called polyps, which produce skeletons of calcium carbonate. "
            "Most reef-building corals live in partnership with microscopic algae called zooxanthellae, which "
            "live inside their tissues and supply sugars through photosynthesis. Because the algae need "
            "sunlight, these corals usually grow in clear water less than 30 metres deep. When the water "
            "becomes too warm for several weeks, corals expel their algae and turn white, a process known as "
            "bleaching. Bleached corals can recover if temperatures fall, but prolonged bleaching often kills "
            "them. A healthy reef can grow upward by a few millimetres to about one centimetre per year."
        ),
        "qas": [
            ("What are coral skeletons made of?", "calcium carbonate"),
            ("What are the algae living inside corals called?", "zooxanthellae"),
            ("What is the process called when corals expel their algae and turn white?", "bleaching", 0),
            ("Which is the largest coral reef in the world?", None),
        ],
    },
    {
        "title": "Violin workshop in Verano",
        "lang": "en",
        "split": "train",
        "context": (
            "In a narrow workshop above a shoe shop in the town of Verano, luthier Giulia Ferrante builds about "
            "six violins a year. She carves the tops from spruce that has been air-dried for at least ten years "
            "and the backs from flamed maple. A single instrument takes roughly 250 hours of work, including the "
            "varnish, which she applies in twelve thin coats. Ferrante trained for five years under the maker "
            "Paolo Sandri before opening her own shop in 2006. Besides new instruments, she repairs cracks, "
            "replaces fingerboards, and adjusts sound posts for students at the local conservatory. Her violins "
            "currently sell for around 14,000 euros."
        ),
        "qas": [
            ("How many violins does Giulia Ferrante build each year?", "about six"),
            ("Under whom did Ferrante train?", "Paolo Sandri"),
            ("How much does one of her violins sell for?", "around 14,000 euros"),
            ("Which well-known soloist plays a Ferrante violin?", None),
        ],
    },
    {
        "title": "Ashgrove Public Library",
        "lang": "en",
        "split": "train",
        "context": (
            "The Ashgrove Public Library reopened in September 2022 after a two-year renovation that cost 3.8 "
            "million pounds. The building, originally a Victorian corn exchange, now has a glass reading room on "
            "the roof and a children's area with space for 40 visitors. The library lends about 120,000 items a "
            "year, including books, audiobooks, board games, and even tools such as drills and ladders. Members "
            "can borrow up to fifteen items at once for three weeks. A weekly storytelling session for toddlers "
            "takes place every Wednesday at ten o'clock. The head librarian, Priya Dawson, says the tool library "
            "has been the most popular new service."
        ),
        "qas": [
            ("When did the Ashgrove Public Library reopen?", "September 2022"),
            ("How much did the renovation cost?", "3.8 million pounds"),
            ("What was the library building originally?", "a Victorian corn exchange"),
            ("Who is the head librarian?", "Priya Dawson"),
            ("What time does the library open on Sundays?", None),
        ],
    },
    {
        "title": "Brightwater Glass Studio",
        "lang": "en",
        "split": "train",
        "context": (
            "The Brightwater Glass Studio was opened in 2013 by the siblings Emma and Noah Castell in a "
            "converted boat shed. Their main furnace holds 90 kilograms of molten glass and runs day and night "
            "at about 1,150 degrees Celsius. Finished pieces are cooled slowly in an annealing oven for up to "
            "sixteen hours to prevent cracking. The studio is known for its blue-green drinking glasses, "
            "coloured with a small amount of copper oxide. Visitors can watch demonstrations from a viewing "
            "gallery, and on weekends they can book a one-hour class to make their own paperweight."
        ),
        "qas": [
            ("Who opened the Brightwater Glass Studio?", "Emma and Noah Castell"),
            ("At what temperature does the main furnace run?", "about 1,150 degrees Celsius"),
            ("What gives the drinking glasses their blue-green colour?", "copper oxide"),
            ("How much does the paperweight class cost?", None),
        ],
    },
    {
        "title": "Teller Hut",
        "lang": "en",
        "split": "train",
        "context": (
            "The Teller Hut stands at 2,740 metres on the ridge between the Varn Glacier and the Sella Pass. It "
            "was built in 1912 by a local alpine club and rebuilt after an avalanche damaged it in 1958. The hut "
            "has 46 beds in shared dormitories and is staffed from late June to mid-September. Water comes from "
            "melting snow, and electricity is supplied by solar panels installed on the south wall. Most "
            "climbers reach the hut in about four hours from the village of Ostrell, then leave before dawn to "
            "climb the Teller Peak. Guests are asked to bring a sleeping bag liner and to carry their rubbish "
            "back down the valley."
        ),
        "qas": [
            ("At what altitude does the Teller Hut stand?", "2,740 metres"),
            ("In what year did an avalanche damage the hut?", "1958"),
            ("From which village do most climbers walk to the hut?", "Ostrell"),
            ("How is electricity supplied to the hut?", "solar panels"),
            ("How much does a night at the Teller Hut cost?", None),
        ],
    },
    {
        "title": "MV Island Star ferry",
        "lang": "en",
        "split": "train",
        "context": (
            "The ferry MV Island Star links the mainland port of Carrick with the island of Inishvar, a crossing "
            "of 22 kilometres. She was built in 2005 at a shipyard in Gdańsk and can carry 180 passengers and 24 "
            "cars. In summer there are six return sailings a day, reduced to three in winter. The crossing "
            "normally takes 70 minutes, though strong westerly winds can cancel services for several days at a "
            "time. Islanders rely on the ferry for deliveries of food and fuel, and the local doctor travels on "
            "it twice a week to run a clinic on Inishvar."
        ),
        "qas": [
            ("Which mainland port does the MV Island Star sail from?", "Carrick"),
            ("Where was the ferry built?", "Gdańsk"),
            ("How long does the crossing normally take?", "70 minutes"),
            ("Who is the captain of the MV Island Star?", None),
        ],
    },
    {
        "title": "Pellow Farm cider",
        "lang": "en",
        "split": "dev",
        "context": (
            "At Pellow Farm, cider making starts in October when the apples have fallen naturally from the "
            "trees. The farm grows fourteen varieties, mostly bittersweet apples such as Dabinett. Apples are "
            "washed, milled into a pulp, and pressed between layers of cloth in a wooden press dating from 1874. "
            "The juice ferments in oak barrels using wild yeasts for about three months, and the cider is then "
            "left to mature until the following summer. Owner Martha Quill produces around 9,000 litres a year "
            "and sells most of it from the farm shop, though some is sent to pubs in Bristol."
        ),
        "qas": [
            ("In which month does cider making start at Pellow Farm?", "October"),
            ("What does the juice ferment in?", "oak barrels"),
            ("Who owns Pellow Farm?", "Martha Quill"),
            ("What is the alcohol content of the cider?", None),
        ],
    },
    {
        "title": "Linden Road Community Garden",
        "lang": "en",
        "split": "train",
        "context": (
            "The Linden Road Community Garden occupies a former car park that was handed over to residents in "
            "2017. It contains 32 raised beds, each rented for a small yearly fee, plus a shared herb spiral and "
            "a greenhouse built from recycled windows. Rainwater from the greenhouse roof is collected in four "
            "large tanks holding 1,000 litres each. Gardeners meet on the last Sunday of every month for a work "
            "day, and any surplus vegetables are donated to a nearby food bank. The garden's coordinator, Marek "
            "Novák, started a beekeeping corner in 2021 with two hives."
        ),
        "qas": [
            ("What did the community garden used to be?", "a former car park"),
            ("Where are surplus vegetables donated?", "a nearby food bank"),
            ("Who is the garden's coordinator?", "Marek Novák"),
            ("How much is the yearly fee for a raised bed?", None),
        ],
    },
    {
        "title": "Harrow Moor Wind Farm",
        "lang": "en",
        "split": "train",
        "context": (
            "The Harrow Moor Wind Farm was switched on in November 2019. Its 28 turbines each have a capacity of "
            "3.6 megawatts, giving a total of about 100 megawatts. The blades are 63 metres long, and the tips "
            "reach 150 metres above the ground at their highest point. According to the operator, Northwind "
            "Energy, the farm produces enough electricity each year for roughly 70,000 homes. A community fund "
            "receives 5,000 pounds per megawatt each year and has paid for a new roof on the village hall and "
            "insulation for local homes. The turbines stop automatically when wind speeds exceed 25 metres per "
            "second."
        ),
        "qas": [
            ("When was the Harrow Moor Wind Farm switched on?", "November 2019"),
            ("Which company operates the wind farm?", "Northwind Energy"),
            ("At what wind speed do the turbines stop?", "25 metres per second"),
            ("Which company manufactured the turbines?", None),
        ],
    },
    {
        "title": "Wehrli printing press",
        "lang": "en",
        "split": "train",
        "context": (
            "In 1741 the printer Jonas Wehrli set up the first printing press in the town of Oberwald-am-Rhee. "
            "His workshop produced almanacs, hymn books, and a weekly newssheet called the Rhee Messenger, which "
            "appeared every Friday from 1750 until 1799. Wehrli's wooden press, operated by two men, could print "
            "about 240 sheets an hour. Paper came from a mill on the Kessel stream, a day's journey away. After "
            "Wehrli's death in 1768, his widow, Anna Wehrli, ran the business for another twenty years. The "
            "press itself survives and is displayed in the town hall."
        ),
        "qas": [
            ("What was the name of the weekly newssheet?", "the Rhee Messenger"),
            ("Who ran the business after Jonas Wehrli died?", "Anna Wehrli"),
            ("Where is the press displayed today?", "the town hall"),
            ("How many copies of the Rhee Messenger were printed each week?", None),
        ],
    },
    {
        "title": "Saltbridge Community Choir",
        "lang": "en",
        "split": "train",
        "context": (
            "The Saltbridge Community Choir has around 70 singers and no auditions. It rehearses on Monday "
            "evenings in St Brigid's Hall under the direction of Owen Pryce, a former music teacher who has led "
            "the choir since 2008. The choir sings in four parts and performs two main concerts each year, one "
            "in June and one in December. Its repertoire ranges from Renaissance motets to folk songs and film "
            "music. In 2022 the choir raised 11,000 pounds for the local hospice by performing Handel's Messiah "
            "with a small orchestra. New members are welcome at the start of each term in January and September."
        ),
        "qas": [
            ("How many singers are in the Saltbridge Community Choir?", "around 70"),
            ("Who directs the choir?", "Owen Pryce"),
            ("How much money did the choir raise in 2022?", "11,000 pounds"),
            ("How many tenors sing in the choir?", None),
        ],
    },
    {
        "title": "Westmere Zoo penguins",
        "lang": "en",
        "split": "train",
        "context": (
            "The penguin colony at Westmere Zoo consists of 34 African penguins living in an outdoor pool "
            "holding 400,000 litres of salt water. Keepers feed the birds twice a day with sprats and herring, "
            "and each penguin wears a coloured band on its wing so that staff can tell individuals apart. The "
            "zoo takes part in a European breeding programme, and in 2023 five chicks hatched, the most in a "
            "single season. The oldest bird, a female called Pebble, is 31 years old. Visitors can watch feeding "
            "time at 11:30 and 15:00 every day."
        ),
        "qas": [
            ("How many penguins are in the Westmere Zoo colony?", "34"),
            ("What fish are the penguins fed?", "sprats and herring"),
            ("What is the name of the oldest penguin?", "Pebble"),
            ("When did the penguin colony first arrive at Westmere Zoo?", None),
        ],
    },
    {
        "title": "Dunmore Athletic",
        "lang": "en",
        "split": "train",
        "context": (
            "Dunmore Athletic is an amateur football club founded in 1923 by workers from the Dunmore "
            "brickworks. The team plays in green and white stripes at Kiln Lane, a ground with a covered stand "
            "for 350 spectators. In the 2022–23 season the club won the county league for the first time in "
            "forty years, scoring 81 goals in 30 matches. Striker Callum Reid finished as the league's top "
            "scorer with 27 goals. The club also runs eight youth teams and a women's side, which was formed in "
            "2015."
        ),
        "qas": [
            ("Who founded Dunmore Athletic?", "workers from the Dunmore brickworks"),
            ("How many goals did the club score in the 2022–23 season?", "81"),
            ("Who was the league's top scorer?", "Callum Reid"),
            ("Who is the manager of Dunmore Athletic?", None),
            ("How many people attended the club's final match of the season?", None),
        ],
    },
    {
        "title": "Greyholm salt marsh",
        "lang": "en",
        "split": "train",
        "context": (
            "The Greyholm salt marsh lies behind a shingle spit on the estuary of the River Wend. Twice a day "
            "the tide floods its creeks, depositing fine mud that builds the marsh up by a few millimetres each "
            "year. The lower marsh is dominated by glasswort and cordgrass, while sea lavender colours the higher "
            "ground purple in July and August. In winter the marsh supports up to 12,000 wading birds, such as "
            "redshank and dunlin. Since 1995 cattle have grazed the upper marsh between May and October to keep "
            "the vegetation short for nesting lapwings."
        ),
        "qas": [
            ("On the estuary of which river does the Greyholm salt marsh lie?", "the River Wend"),
            ("Which plant colours the higher marsh purple?", "sea lavender"),
            ("How many wading birds does the marsh support in winter?", "up to 12,000"),
            ("How large is the Greyholm salt marsh?", None),
        ],
    },
    {
        "title": "Brackley Farm weather station",
        "lang": "en",
        "split": "dev",
        "context": (
            "The weather station at Brackley Farm has recorded daily observations since 1 January 1908, making "
            "it one of the longest unbroken records in the region. Readings of temperature, rainfall, and "
            "sunshine are taken every morning at nine o'clock. The highest temperature ever recorded there was "
            "36.4 degrees Celsius in July 2022, and the lowest was minus 19.2 degrees in January 1940. The "
            "wettest day brought 94 millimetres of rain. The station has been run by three generations of the "
            "Hale family; the current observer, Ruth Hale, took over from her father in 2001."
        ),
        "qas": [
            ("Since when has the station recorded daily observations?", "1 January 1908"),
            ("What is the highest temperature recorded at Brackley Farm?", "36.4 degrees Celsius"),
            ("Who is the current observer?", "Ruth Hale"),
            ("What is the average annual rainfall at Brackley Farm?", None),
        ],
    },
    {
        "title": "Marlow Cross clock tower",
        "lang": "en",
        "split": "train",
        "context": (
            "The clock tower of Marlow Cross town hall was completed in 1884 and rises 42 metres above the market "
            "square. Its four dials are each 2.5 metres across, and the clock mechanism was made by the firm of "
            "Hartley and Sons. Until 1976 the clock was wound by hand every eight days, a job that took the "
            "caretaker about half an hour. An electric winding system now does the work. The tower holds five "
            "bells; the largest, nicknamed Old Tom, weighs 1.9 tonnes and strikes the hours, while the four "
            "smaller bells play a short chime every quarter of an hour."
        ),
        "qas": [
            ("How tall is the Marlow Cross clock tower?", "42 metres"),
            ("Which firm made the clock mechanism?", "Hartley and Sons"),
            ("What is the largest bell nicknamed?", "Old Tom"),
            ("Who was the architect of the clock tower?", None),
        ],
    },
    {
        "title": "Sunhill Pottery",
        "lang": "en",
        "split": "train",
        "context": (
            "Sunhill Pottery makes stoneware mugs, bowls, and plates from clay dug within 30 kilometres of the "
            "workshop. Potter Kenji Aldridge throws each piece on an electric wheel, then lets it dry for about a "
            "week before a first firing at 1,000 degrees Celsius. After glazing, the pieces go back into a gas "
            "kiln for a second firing at 1,280 degrees Celsius, which takes around eleven hours. The workshop's "
            "best-known glaze is a speckled oatmeal white made with wood ash from the potter's own stove. "
            "Aldridge fires the kiln roughly twice a month and produces about 2,500 pieces a year."
        ),
        "qas": [
            ("Who is the potter at Sunhill Pottery?", "Kenji Aldridge"),
            ("At what temperature is the second firing done?", "1,280 degrees Celsius"),
            ("What ingredient is used in the oatmeal white glaze?", "wood ash"),
            ("Where does Aldridge sell his pottery?", None),
        ],
    },
    {
        "title": "Radio Esker",
        "lang": "en",
        "split": "train",
        "context": (
            "Radio Esker is a community radio station broadcasting on 104.7 FM from a studio above the post "
            "office in Tullow Bridge. It went on air on 3 March 2010 and is run almost entirely by 85 volunteers. "
            "The station broadcasts 18 hours a day, with local news at the top of every hour. Its most popular "
            "programme is 'The Morning Field', a farming show presented by Siobhán Greer every weekday at seven. "
            "The transmitter sits on Carn Hill and reaches listeners within about 40 kilometres."
        ),
        "qas": [
            ("On what frequency does Radio Esker broadcast?", "104.7 FM"),
            ("When did Radio Esker go on air?", "3 March 2010"),
            ("Who presents the farming show?", "Siobhán Greer"),
            ("How many listeners does Radio Esker have?", None),
        ],
    },
    {
        "title": "Alpweide dairy",
        "lang": "en",
        "split": "train",
        "context": (
            "The Alpweide dairy produces a hard mountain cheese from the raw milk of 60 cows that graze high "
            "pastures in summer. About 11 litres of milk are needed for one kilogram of cheese. After the curd is "
            "cut, stirred, and heated to 52 degrees Celsius, it is pressed into wheels weighing around 35 "
            "kilograms. The wheels are soaked in brine for two days and then ripened on spruce boards in a cellar "
            "for at least ten months. Cheesemaker Lukas Imhof turns and brushes every wheel by hand twice a week, "
            "and in autumn the cows are brought down to the valley in a procession decorated with flowers."
        ),
        "qas": [
            ("How much milk is needed for one kilogram of cheese?", "About 11 litres"),
            ("How much does a cheese wheel weigh?", "around 35 kilograms"),
            ("For how long is the cheese ripened?", "at least ten months"),
            ("Who is the cheesemaker?", "Lukas Imhof"),
            ("What is the name of the cheese made at Alpweide?", None),
        ],
    },
    {
        "title": "Aurel probe",
        "lang": "en",
        "split": "dev",
        "context": (
            "The Aurel probe is a planned mission that would launch on 9 September 2031 to study the icy moon "
            "Europa. It is designed to carry seven instruments, including an ice-penetrating radar and a mass "
            "spectrometer built to sample plumes of water vapour. The journey to Jupiter would take about six "
            "years, using gravity assists from Venus and Earth. Once in orbit around Jupiter, Aurel would make "
            "38 close flybys of Europa, passing as low as 25 kilometres above the surface. The mission is led by "
            "the Helion Space Agency, and its principal scientist is Dr. Mira Castellanos."
        ),
        "qas": [
            ("When is the Aurel probe planned to launch?", "9 September 2031"),
            ("Which moon would the probe study?", "Europa", 0),
            ("How many close flybys of Europa are planned?", "38"),
            ("Who is the principal scientist of the mission?", "Dr. Mira Castellanos"),
            ("How much is the Aurel mission expected to cost?", None),
        ],
    },
    {
        "title": "Kestrel Valley robotics team",
        "lang": "en",
        "split": "train",
        "context": (
            "The robotics team at Kestrel Valley High School has fourteen students and two teacher mentors. This "
            "year's robot, nicknamed Magpie, weighs 52 kilograms and was built in six weeks. It uses four "
            "mecanum wheels, which allow it to move sideways, and an arm driven by a single brushless motor. At "
            "the regional competition in Denver, Magpie reached the semi-finals and won the Innovation Award for "
            "its automatic ball-sorting system. Team captain Aisha Rahman says the hardest part was writing the "
            "vision code that recognises coloured balls."
        ),
        "qas": [
            ("What is the robot's nickname?", "Magpie", 0),
            ("What award did the robot win?", "the Innovation Award"),
            ("Who is the team captain?", "Aisha Rahman"),
            ("Which company sponsors the robotics team?", None),
        ],
    },
    {
        "title": "Fallow Sound Bridge",
        "lang": "en",
        "split": "train",
        "context": (
            "The new Fallow Sound Bridge opened to traffic on 30 June 2021, replacing a car ferry that had "
            "operated since 1936. The cable-stayed bridge is 1.7 kilometres long, with a main span of 480 metres "
            "between two concrete towers. Each tower is 118 metres tall. Around 900 workers were involved at the "
            "peak of construction, which lasted four and a half years. The bridge carries two traffic lanes in "
            "each direction as well as a separate path for cyclists and pedestrians. Its designers chose a light "
            "grey colour so that the bridge would blend with the sky."
        ),
        "qas": [
            ("When did the Fallow Sound Bridge open?", "30 June 2021"),
            ("How long is the main span?", "480 metres"),
            ("How long did construction last?", "four and a half years"),
            ("How much did the bridge cost to build?", None),
            ("What is the toll for crossing the bridge by car?", None),
        ],
    },
    {
        "title": "Domaine Castel-Rouge",
        "lang": "en",
        "split": "train",
        "context": (
            "Domaine Castel-Rouge covers 18 hectares of vines on south-facing limestone slopes. Most of the "
            "vineyard is planted with Grenache and Syrah, and the oldest vines date from 1952. Harvest usually "
            "begins in the second week of September and is done entirely by hand by a team of about 40 pickers. "
            "Grapes are sorted on a vibrating table before fermentation in concrete tanks. The estate produces "
            "about 70,000 bottles a year. Winemaker Hélène Marchetti, who took over from her uncle, converted the "
            "vineyard to organic farming in 2012 and has since planted hedges and fruit trees between the rows."
        ),
        "qas": [
            ("How large is Domaine Castel-Rouge?", "18 hectares"),
            ("In what are the grapes fermented?", "concrete tanks"),
            ("When was the vineyard converted to organic farming?", "2012"),
            ("How much does a bottle of Castel-Rouge wine cost?", None),
        ],
    },
    {
        "title": "Ice fishing on Lake Vesi",
        "lang": "en",
        "split": "train",
        "context": (
            "Every winter Lake Vesi freezes for about four months, and the ice usually becomes safe to walk on in "
            "early January. Local anglers drill holes with hand augers and fish for perch and pike through the "
            "ice. Authorities advise that clear ice should be at least 10 centimetres thick before a person walks "
            "on it, and 25 centimetres for a small car. The village of Mökkilä holds an ice-fishing competition "
            "on the first Saturday in March, in which about 300 anglers compete for two hours. The heaviest pike "
            "ever landed at the contest weighed 11.3 kilograms."
        ),
        "qas": [
            ("For how long does Lake Vesi stay frozen?", "about four months"),
            ("How thick should clear ice be before a person walks on it?", "at least 10 centimetres"),
            ("How heavy was the heaviest pike landed at the contest?", "11.3 kilograms"),
            ("Who caught the heaviest pike at the contest?", None),
        ],
    },
    {
        "title": "Mirren Bay Film Festival",
        "lang": "en",
        "split": "dev",
        "context": (
            "The Mirren Bay Film Festival takes place over five days each November in a converted tram depot. "
            "Founded in 2007 by the critic Lena Vos, it shows around 90 short films and 25 feature films from "
            "more than 30 countries. The festival's top prize, the Silver Gull, is awarded by a jury of five, "
            "while a separate audience award is decided by ballots handed in after each screening. In 2023 the "
            "Silver Gull went to 'The Quiet Harbour', a debut film by the director Tomás Ibarra. Around 14,000 "
            "tickets were sold that year."
        ),
        "qas": [
            ("Who founded the Mirren Bay Film Festival?", "Lena Vos"),
            ("What is the festival's top prize called?", "the Silver Gull", 0),
            ("Which film won the top prize in 2023?", "The Quiet Harbour"),
            ("Who won the audience award in 2023?", None),
        ],
    },
    {
        "title": "Музей самоваров в Краснолесье",
        "lang": "ru",
        "split": "train",
        "context": (
            "Музей самоваров в посёлке Краснолесье открылся в 1998 году в здании бывшей почтовой станции. "
            "Здание деревянное, с резными наличниками и зелёной крышей. Музей основал местный учитель истории "
            "Григорий Павлович Лебедев, который собирал самовары более тридцати лет. Сегодня в коллекции около "
            "420 предметов. Самый старый самовар был изготовлен в Туле в 1812 году и весит 9 килограммов, а "
            "самый маленький экспонат вмещает всего одну чашку воды. Каждое воскресенье в музее проходит "
            "чаепитие для гостей, а летом работает мастерская, где дети расписывают деревянные подносы. В 2019 "
            "году музей посетили 15 тысяч человек."
        ),
        "qas": [
            ("В каком году открылся музей самоваров?", "1998"),
            ("Кто основал музей?", "Григорий Павлович Лебедев"),
            ("Сколько предметов в коллекции музея?", "около 420 предметов"),
            ("Где был изготовлен самый старый самовар?", "в Туле"),
            ("Сколько стоит входной билет в музей?", None),
        ],
    },
    {
        "title": "Το ελαιοτριβείο του Ανεμόκαμπου",
        "lang": "el",
        "split": "train",
        "context": (
            "Το ελαιοτριβείο του χωριού Ανεμόκαμπος λειτουργεί από το 1926. Το ίδρυσε ο Νικόλαος Δημάκης, και "
            "σήμερα το διευθύνει η εγγονή του, η Ελένη Δημάκη. Η συγκομιδή των ελιών αρχίζει τον Νοέμβριο και "
            "διαρκεί περίπου τρεις μήνες. Κάθε χρόνο το ελαιοτριβείο επεξεργάζεται περίπου 800 τόνους ελιές από "
            "150 οικογένειες του χωριού. Για ένα λίτρο λαδιού χρειάζονται περίπου πέντε κιλά ελιές. Η παλιά "
            "πέτρινη μυλόπετρα δεν χρησιμοποιείται πια, αλλά εκτίθεται στην αυλή για τους επισκέπτες. Το "
            "καλοκαίρι το κτίριο φιλοξενεί μικρές εκθέσεις για την ιστορία της ελιάς στην περιοχή."
        ),
        "qas": [
            ("Από πότε λειτουργεί το ελαιοτριβείο;", "1926"),
            ("Ποιος ίδρυσε το ελαιοτριβείο;", "Νικόλαος Δημάκης"),
            ("Ποιος διευθύνει σήμερα το ελαιοτριβείο;", "Ελένη Δημάκη"),
            ("Πόσα κιλά ελιές χρειάζονται για ένα λίτρο λαδιού;", "πέντε κιλά"),
            ("Πόσο κοστίζει ένα λίτρο λαδιού από το ελαιοτριβείο;", None),
        ],
    },
    {
        "title": "青石镇永安桥",
        "lang": "zh",
        "split": "dev",
        "context": (
            "青石镇的永安桥是一座三孔石拱桥，建于清朝乾隆年间，全长四十二米，宽五米。桥身用当地出产的青石砌成，"
            "桥栏上雕刻着二十八只石狮子，每只的神态都不相同。据镇志记载，修桥的费用由镇上的商人陈德茂捐出。"
            "一九八五年，永安桥被列为县级文物保护单位。二〇一六年，镇政府花费一百二十万元对桥面进行了维修。"
            "每年农历五月初五，镇上的居民都会在桥下的河道里举行龙舟比赛，吸引许多外地游客前来观看。"
        ),
        "qas": [
            ("永安桥全长多少米？", "四十二米"),
            ("桥栏上雕刻着多少只石狮子？", "二十八只"),
            ("修桥的费用由谁捐出？", "陈德茂"),
            ("永安桥哪一年被列为县级文物保护单位？", "一九八五年"),
            ("永安桥的设计者是谁？", None),
        ],
    },
    {
        "title": "واحة النخيل الخضراء",
        "lang": "ar",
        "split": "dev",
        "context": (
            "تقع واحة النخيل الخضراء على بعد ستين كيلومترا جنوب مدينة الرمال. يزرع فيها المزارعون أكثر من خمسة "
            "وعشرين ألف نخلة، وأشهر أصناف التمر فيها صنف يسمى البرحي. يبدأ موسم الحصاد في شهر أغسطس ويستمر حتى "
            "نهاية أكتوبر. تعتمد الواحة في الري على ثلاث عيون طبيعية وقنوات قديمة تسمى الأفلاج. وفي كل عام يقام "
            "مهرجان التمور في الساحة الرئيسية، ويشارك فيه نحو مئتي مزارع. ويشرف على جمعية المزارعين السيد سالم "
            "بن راشد منذ عام 2015. وتباع معظم التمور في سوق الواحة الأسبوعي كل يوم خميس."
        ),
        "qas": [
            ("كم تبعد الواحة عن مدينة الرمال؟", "ستين كيلومترا"),
            ("ما أشهر أصناف التمر في الواحة؟", "البرحي"),
            ("ماذا تسمى القنوات القديمة التي تعتمد عليها الواحة في الري؟", "الأفلاج"),
            ("من يشرف على جمعية المزارعين؟", "سالم بن راشد"),
            ("كم طنا من التمر تنتج الواحة كل عام؟", None),
            ("من أسس مهرجان التمور؟", None),
        ],
    },
    {
        "title": "रामपुरा का पतंग महोत्सव",
        "lang": "hi",
        "split": "train",
        "context": (
            "रामपुरा गाँव में हर साल मकर संक्रांति के दिन पतंग महोत्सव मनाया जाता है। इस महोत्सव की शुरुआत 1972 "
            "में गाँव के स्कूल के प्रधानाध्यापक मोहनलाल शर्मा ने की थी। आज इसमें आसपास के बारह गाँवों से लगभग "
            "तीन हज़ार लोग भाग लेते हैं। सबसे ऊँची पतंग उड़ाने वाले को पीतल का एक कप इनाम में दिया जाता है। "
            "महोत्सव के दौरान गाँव की महिलाएँ तिल के लड्डू बनाती हैं और मेहमानों को बाँटती हैं। पिछले वर्ष सबसे "
            "बड़ी पतंग की लंबाई छह मीटर थी।"
        ),
        "qas": [
            ("पतंग महोत्सव की शुरुआत किसने की थी?", "मोहनलाल शर्मा"),
            ("महोत्सव की शुरुआत किस वर्ष हुई थी?", "1972"),
            ("महोत्सव में कितने गाँवों से लोग भाग लेते हैं?", "बारह"),
            ("सबसे ऊँची पतंग उड़ाने वाले को इनाम में क्या दिया जाता है?", "पीतल का एक कप"),
            ("पिछले वर्ष सबसे ऊँची पतंग किसने उड़ाई थी?", None),
        ],
    },
]


def find_offset(context: str, answer: str, occurrence: int | None) -> int:
    starts = []
    i = context.find(answer)
    while i != -1:
        starts.append(i)
        i = context.find(answer, i + 1)
    if not starts:
        raise ValueError(f"answer {answer!r} not found in context")
    if occurrence is None:
        if len(starts) > 1:
            raise ValueError(f"answer {answer!r} occurs {len(starts)} times; give an occurrence index")
        return starts[0]
    return starts[occurrence]


def build():
    splits = {"train": [], "dev": []}
    n = 0
    for p in PASSAGES:
        qas = []
        for qa in p["qas"]:
            n += 1
            question, answer = qa[0], qa[1]
            occurrence = qa[2] if len(qa) > 2 else None
            item = {"id": f"spanqa-sample-{n:04d}", "question": question}
            if answer is None:
                item["answers"] = []
                item["is_impossible"] = True
            else:
                start = find_offset(p["context"], answer, occurrence)
                assert p["context"][start : start + len(answer)] == answer
                item["answers"] = [{"text": answer, "answer_start": start}]
                item["is_impossible"] = False
            qas.append(item)
        splits[p["split"]].append(
            {"title": p["title"], "paragraphs": [{"context": p["context"], "qas": qas}]}
        )
    return {name: {"version": "v2.0", "data": data} for name, data in splits.items()}


def stats(dataset):
    langs = Counter()
    passages = questions = impossible = 0
    title_lang = {p["title"]: p["lang"] for p in PASSAGES}
    for article in dataset["data"]:
        for para in article["paragraphs"]:
            passages += 1
            langs[title_lang[article["title"]]] += 1
            for qa in para["qas"]:
                questions += 1
                impossible += qa["is_impossible"]
    return passages, questions, impossible, dict(langs)


def main():
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else (
        Path(__file__).resolve().parent.parent / "src" / "spanqa" / "sample_data"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, dataset in build().items():
        path = out_dir / f"{name}.json"
        with open(path, "w", encoding="utf-8") as f:
            json.dump(dataset, f, ensure_ascii=False, indent=1)
            f.write("\n")
        p, q, imp, langs = stats(dataset)
        print(f"{path}: {p} passages, {q} questions, {imp} unanswerable, languages {langs}")


if __name__ == "__main__":
    main()
