"""Word lists the name and place recognisers of :mod:`core.privacy_engine` use, from general knowledge.

* :data:`GIVEN_NAMES`: common given names across many languages, lower case. Names that are also everyday English
  words ("Will", "May", "Grace") or places ("Austin", "Paris") are left out, so that a given name is a name.
* :data:`PLACES`: countries, regions and states, and cities and towns, as written (capitalised).
* :data:`COMPANIES`: company, product and app names (and the names of app menus), lower case, in particular the ones
  named after people ("Morgan Stanley") or places, and the software a support desk hears about ("Firefox",
  "Outlook"), which spaCy's small model often takes for a person or a place.
* :data:`FIELD_WORDS`: words of forms and chat that are never a name on their own ("Email:", "Mobile:").
"""

from __future__ import annotations


def _words(block: str) -> frozenset[str]:
    return frozenset(word.strip().lower() for word in block.split() if word.strip())


def _lines(block: str) -> frozenset[str]:
    return frozenset(part.strip() for line in block.splitlines() for part in line.split(",") if part.strip())


GIVEN_NAMES = _words("""
aaron abdul abdullah abel abigail abimbola abiodun abraham ada adaeze adam adebayo adeola adil adnan adrian adriana
adrienne agata agatha agnes agnieszka ahmad ahmed aidan aiden aileen aimee ainsley aisha aisling akash akira akosua
alan alana alastair albert alberto aleksander aleksandra alessandra alessandro alex alexa alexander alexandra alexei
alexis alfie alfred alice alfredo ali alicia alina alison alistair aliyah allan allison alma alonso alvaro amadou amal
amanda amara amaya amber amelia amelie amina amir amit amos amy ana anastasia anders andre andrea andreas andrei
andres andrew andrzej andy aneesh angela angelica angelo angus anil anita anja anjali ann anna annabel annabelle anne
annette annie anthony antoine anton antonio anu anya aoife arash archie ari ariana arjun arnav arne aron arthur arturo
aryan asha ashish ashley ashok aslan astrid aurelie ava avery axel ayaan ayesha ayodele ayumi baba babajide bao
barbara barry bartosz basia beata beatrice beatriz becky belinda ben benjamin bernadette bernard bertrand beth bethany
betty bianca bilal bjorn blessing bogdan boris brandon brenda brendan brian bridget brigid britney bruno bryan caitlin
callum calum camila camille candice cara carina carl carla carlo carlos carmen carol carolina caroline carys casey
catalina catherine cathy cecilia cedric celia celine chaim chandra chantal charlie charlotte chen cheng chiamaka chidi
chidinma chiara chinedu chinonso chioma chloe chris christian christina christine christopher chukwuma ciara cillian
claire clara clare claudia claudio clement colin colm conor connor constance cormac craig cristina cristian cynthia
cyril dag dagmar daisuke damian damien dan dana dani daniel daniela daniele danielle danny dara darius darren dave
david davide dawid dean debbie deborah declan deepak deirdre delia demetrius denis denise dennis derek desmond devon
dhruv diana diane diego dilip dimitri dimitris dina dinesh dmitri dmitry dominic dominika dominique donal donna doreen
doris dorothy douglas duncan dylan eamon eamonn ebony edgar edith edmund eduardo edward edwin efua eileen ekaterina
elaine eleanor elena eli elias elif elijah elin elisa elisabeth eliza elizabeth ella ellen ellie elliot elliott eloise
elsa emeka emil emilia emilie emily emma emmanuel emre enrique enzo eoin erik erika erin ernesto esther ethan eugene
eva evan evelyn ewa ewan ezra fabian fabio fahad faisal farah farid farhan fatima fatuma federica federico felicity
felipe felix femi fernanda fernando filip finlay finn fiona florian folake francesca francesco francis francisco
franco francois frederick freya fumiko gabriel gabriela gabriella gareth garry gary gavin gemma geoffrey george gerald
gerard gerhard giacomo gianluca gillian gina giorgio giovanni girish giulia giuseppe gloria gordon graham grzegorz
guillaume gunnar gustavo gwen hadi hailey haley hamid hamish hamza hana hannah hans harold harriet harry haruka haruto
harvey hassan heidi helen helena helga henrik henry hiroshi hitoshi hugh hugo hussein ian ibrahim idris ifeoma ignacio
igor ikechukwu ilse imogen imran ines inga ingrid ioana irene irina isaac isabel isabella isabelle isaiah ishaan isla
ismail ivan ivana izabela jacek jacob jacqueline jakub jamal james jamie jana jane janet janice janina jasmine jason
javier jay jayden jeanette jelena jennifer jenny jeremy jerome jess jessica jiang jim jin jing joanna joao jodie joe
joel johan johanna john johnny jon jonas jonathan jorge jose josef joseph josephine joshua juan judith julia julian
juliana julie julien julio juliusz jurgen justin kacper kai kamal kamil kanika karan karen karim karin karina karl
karolina kasia katarzyna kate katharina katherine kathleen kathryn katie katrin kayode keith kelly kelvin ken kenji
kenneth kevin khadija khalid kiara kieran kim kimberly kirsty klaus kofi kojo konrad krishna krisztina kristina
krzysztof kumar kwabena kwame kwasi kyle laila lakshmi lars laszlo laura lauren laurence leah leila lena leo leon
leonardo leonie lewis liam lidia lina linda lindsay lisa liz lorenzo louis louise luca lucas lucia luciana lucy luis
lukas luke lukasz luna lydia lynn maciej madeleine magdalena maggie magnus mahmoud maja malcolm malik malgorzata manon
manuel manuela marcel marcela marco marcus margaret margarita maria mariana marie marina mario marion marisa marius
marta martha martina mary maryam mateo mateusz mathilde matias matteo matt matthew matthias maureen maurice mauricio
maxim maximilian maya megan mehmet mei melanie melissa mia michael michaela michal michelle miguel mihai mika mikael
mike mikhail milan milena mira miriam mo mohamed mohammad mohammed moira monica monika morten moses muhammad murat
mustafa nadia nadine naledi nancy naomi naoko narges natalia natalie natasha nathan nathaniel neha neil nelly nia
niall nicholas nick nicola nicolas nicole nigel nikhil nikita nikola nikolai niamh nina nisha noah noemi nora norbert
noura nuno obinna odette ola olga oliver olivia olusegun oluwaseun omar oscar osman owen pablo paddy pamela paola
parisa parveen pascal patricia patrick paul paula paulina pauline pavel pawel pedro pete peter petra philip philippe
pierre pietro piotr pooja prakash pranav precious preeti priya priyanka rachel radek radu rafael rafal raj rajesh
rakesh ramesh ramon rana rani rashid raul ravi rebecca reena renata rhys riccardo richard rita rob robert roberta
roberto robin rohan roisin roman ronan rory rosa rosalind ross rowan roxana ruth ryan sabrina sachin sadia saeed sahil
sakura salma salvatore sam samantha sami samir samira samuel sandeep sandra sanjay santiago sara sarah sasha saskia
scott sean sebastian selin sergei sergio seun shanice shannon sharon shauna sheila shira shirley shreya siddharth
sienna silvia simon simone sinead siobhan sipho sofia solomon sonia sophia sophie stacey stanislaw stefan stefania
stefano stella stephanie stephen steve steven stuart subhash sunil sue susan suzanne sven svetlana sylvia tadeusz
takashi tamara tanya tara tariq tatiana teresa thabo thandiwe theo theodore thomas tiago tim timothy tobias toby tom
tomas tomasz tomoko tony tracy tristan tunde uchenna ulrich umar uwe valentina valeria vanessa varun vera veronica
vicente victor vijay vikram vincent vinod viola vivek vladimir wei wendy wiktoria wilhelm william wojciech xavier xiao
xin yan yaw yasmin yasmine yemi yetunde yiannis yuki yuko yusuf yvonne zachary zainab zara zeynep zhang zofia zoe
zoran zuzanna sundar satya pradeep rajiv suresh mahesh ganesh venkat srinivas gopal harish naveen prasad anand arvind
deepika kavya meera nandini pallavi shalini swati kazuo takeshi yuto sota kenta daiki haruki minjun jiwoo seoyeon
jisoo hyun jae sung tuan minh linh thanh huong oluwadamilare chinwe ngozi emeka tendai farai kagiso lerato thabang
""")

PLACES = _lines("""
Afghanistan, Albania, Algeria, Andorra, Angola, Argentina, Armenia, Australia, Austria, Azerbaijan, Bahamas, Bahrain
Bangladesh, Barbados, Belarus, Belgium, Belize, Benin, Bhutan, Bolivia, Bosnia, Botswana, Brazil, Brunei, Bulgaria
Burkina Faso, Burundi, Cambodia, Cameroon, Canada, Chile, China, Colombia, Congo, Costa Rica, Croatia, Cuba, Cyprus
Czech Republic, Czechia, Denmark, Djibouti, Dominican Republic, Ecuador, Egypt, El Salvador, England, Eritrea
Estonia, Eswatini, Ethiopia, Fiji, Finland, France, Gabon, Gambia, Germany, Ghana, Greece, Greenland, Grenada
Guatemala, Guinea, Guyana, Haiti, Honduras, Hong Kong, Hungary, Iceland, India, Indonesia, Iran, Iraq, Ireland
Israel, Italy, Ivory Coast, Jamaica, Japan, Kazakhstan, Kenya, Kosovo, Kuwait, Kyrgyzstan, Laos, Latvia, Lebanon
Lesotho, Liberia, Libya, Liechtenstein, Lithuania, Luxembourg, Macau, Madagascar, Malawi, Malaysia, Maldives, Mali
Malta, Mauritania, Mauritius, Mexico, Moldova, Monaco, Mongolia, Montenegro, Morocco, Mozambique, Myanmar, Namibia
Nepal, Netherlands, New Zealand, Nicaragua, Niger, Nigeria, North Korea, North Macedonia, Northern Ireland, Norway
Oman, Pakistan, Palestine, Panama, Papua New Guinea, Paraguay, Peru, Philippines, Poland, Portugal, Qatar, Romania
Russia, Rwanda, Saudi Arabia, Scotland, Senegal, Serbia, Seychelles, Sierra Leone, Singapore, Slovakia, Slovenia
Somalia, South Africa, South Korea, South Sudan, Spain, Sri Lanka, Sudan, Suriname, Sweden, Switzerland, Syria
Taiwan, Tajikistan, Tanzania, Thailand, Togo, Trinidad, Tunisia, Turkey, Turkmenistan, Uganda, Ukraine
United Arab Emirates, United Kingdom, United States, Uruguay, Uzbekistan, Venezuela, Vietnam, Wales, Yemen, Zambia
Zimbabwe, Europe, Africa, Asia, Scandinavia, Latin America, South America, North America, Middle East, Caribbean
Alabama, Alaska, Arizona, Arkansas, California, Colorado, Connecticut, Delaware, Florida, Hawaii, Idaho, Illinois
Indiana, Iowa, Kansas, Kentucky, Louisiana, Maine, Maryland, Massachusetts, Michigan, Minnesota, Mississippi
Missouri, Montana, Nebraska, Nevada, New Hampshire, New Jersey, New Mexico, New York, North Carolina, North Dakota
Ohio, Oklahoma, Oregon, Pennsylvania, Rhode Island, South Carolina, South Dakota, Tennessee, Texas, Utah, Vermont
West Virginia, Wisconsin, Wyoming, Ontario, Quebec, British Columbia, Alberta, Manitoba, Nova Scotia, Saskatchewan
Bavaria, Saxony, Hesse, Catalonia, Andalusia, Galicia, Basque Country, Lombardy, Tuscany, Sicily, Sardinia, Provence
Brittany, Normandy, Flanders, Wallonia, Yorkshire, Lancashire, Cornwall, Devon, Kent, Essex, Surrey, Sussex, Cumbria
Norfolk, Suffolk, Somerset, Dorset, Hampshire, Berkshire, Oxfordshire, Cheshire, Merseyside, Durham, Northumberland
Lincolnshire, Derbyshire, Nottinghamshire, Leicestershire, Staffordshire, Shropshire, Herefordshire, Worcestershire
Warwickshire, Gloucestershire, Wiltshire, Cambridgeshire, Hertfordshire, Buckinghamshire, Bedfordshire
Northamptonshire, West Midlands, East Anglia, Highlands, Fife, Aberdeenshire, Midlothian, Lothian, Strathclyde
Gwynedd, Pembrokeshire, Anglesey, Isle of Man, Isle of Wight, Queensland, Victoria, New South Wales, Tasmania, Punjab
Kerala, Maharashtra, Karnataka, Gujarat, Bengal, Tamil Nadu, Lagos State, London, Manchester, Birmingham, Leeds
Liverpool, Glasgow, Edinburgh, Bristol, Sheffield, Cardiff, Belfast, Newcastle, Nottingham, Leicester, Coventry
Bradford, Southampton, Portsmouth, Brighton, Plymouth, Aberdeen, Dundee, Inverness, Swansea, Newport, Derby, Stoke
Wolverhampton, Sunderland, Hull, York, Oxford, Cambridge, Norwich, Exeter, Ipswich, Milton Keynes, Luton, Northampton
Peterborough, Preston, Blackpool, Bolton, Wigan, Stockport, Salford, Huddersfield, Wakefield, Doncaster, Rotherham
Middlesbrough, Gateshead, Carlisle, Lancaster, Chester, Worcester, Gloucester, Cheltenham, Canterbury, Maidstone
Colchester, Chelmsford, Southend, Guildford, Winchester, Salisbury, Bournemouth, Poole, Swindon, Slough, Watford
St Albans, Stirling, Perth, Paisley, Wrexham, Bangor, Derry, Londonderry, Dublin, Cork, Galway, Limerick, Waterford
Kilkenny, New York City, Los Angeles, Chicago, Houston, Philadelphia, San Antonio, San Diego, San Jose, San Francisco
Seattle, Boston, Miami, Atlanta, Detroit, Minneapolis, Baltimore, Pittsburgh, Cleveland, Cincinnati, Columbus
Indianapolis, Milwaukee, Nashville, Memphis, Louisville, New Orleans, Las Vegas, Salt Lake City, Sacramento, Portland
Kansas City, St Louis, Oklahoma City, Tampa, Orlando, Jacksonville, Charlotte, Raleigh, Richmond, Denver, Boise
Anchorage, Honolulu, Albuquerque, Tucson, El Paso, Fort Worth, Brooklyn, Manhattan, Queens, Bronx, Toronto, Montreal
Vancouver, Calgary, Edmonton, Ottawa, Winnipeg, Halifax, Paris, Lyon, Marseille, Toulouse, Bordeaux, Lille, Nantes
Strasbourg, Montpellier, Rennes, Grenoble, Berlin, Hamburg, Munich, Cologne, Frankfurt, Stuttgart, Dusseldorf
Düsseldorf, Leipzig, Dresden, Hanover, Nuremberg, Bremen, Bonn, Mannheim, Amsterdam, Rotterdam, The Hague, Utrecht
Eindhoven, Brussels, Antwerp, Ghent, Bruges, Liege, Luxembourg City, Zurich, Zürich, Geneva, Basel, Bern, Lausanne
Vienna, Salzburg, Innsbruck, Graz, Madrid, Barcelona, Valencia, Seville, Malaga, Bilbao, Zaragoza, Palma, Granada
Lisbon, Porto, Faro, Rome, Milan, Naples, Turin, Florence, Venice, Bologna, Genoa, Palermo, Verona, Pisa, Athens
Thessaloniki, Copenhagen, Aarhus, Stockholm, Gothenburg, Malmo, Malmö, Oslo, Bergen, Helsinki, Tampere, Reykjavik
Warsaw, Krakow, Kraków, Gdansk, Gdańsk, Wroclaw, Wrocław, Poznan, Poznań, Lodz, Łódź, Katowice, Prague, Brno
Bratislava, Budapest, Bucharest, Cluj, Sofia, Belgrade, Zagreb, Ljubljana, Sarajevo, Tirana, Vilnius, Riga, Tallinn
Kyiv, Kiev, Lviv, Odesa, Minsk, Moscow, St Petersburg, Istanbul, Ankara, Izmir, Tel Aviv, Jerusalem, Beirut, Amman
Cairo, Alexandria, Dubai, Abu Dhabi, Doha, Riyadh, Jeddah, Muscat, Kuwait City, Manama, Tehran, Baghdad, Karachi
Lahore, Islamabad, Delhi, New Delhi, Mumbai, Bangalore, Bengaluru, Chennai, Hyderabad, Kolkata, Pune, Ahmedabad
Jaipur, Dhaka, Colombo, Kathmandu, Beijing, Shanghai, Shenzhen, Guangzhou, Chengdu, Wuhan, Hangzhou, Tianjin, Nanjing
Xi'an, Taipei, Tokyo, Osaka, Kyoto, Yokohama, Nagoya, Sapporo, Fukuoka, Seoul, Busan, Incheon, Bangkok, Hanoi
Ho Chi Minh City, Kuala Lumpur, Jakarta, Manila, Lagos, Abuja, Accra, Kumasi, Nairobi, Mombasa, Kampala, Kigali
Addis Ababa, Dar es Salaam, Johannesburg, Cape Town, Durban, Pretoria, Casablanca, Marrakech, Tunis, Algiers, Dakar
Luanda, Harare, Lusaka, Sydney, Melbourne, Brisbane, Perth, Adelaide, Canberra, Auckland, Wellington, Christchurch
Mexico City, Guadalajara, Monterrey, Bogota, Bogotá, Medellin, Lima, Santiago, Buenos Aires, Montevideo, Sao Paulo
São Paulo, Rio de Janeiro, Brasilia, Caracas, Quito, Havana, Kingston, Panama City
""")

COMPANIES = frozenset(line.strip().lower() for line in """
Apple, Microsoft, Alphabet, Google, Amazon, Meta, Facebook, Nvidia, Tesla, Netflix, Intel, AMD, IBM, Oracle, Cisco
Adobe, Salesforce, Qualcomm, Broadcom, Micron, Uber, Airbnb, PayPal, Visa, Mastercard, American Express, Spotify
Samsung, Sony, Toyota, Honda, Nissan, Hyundai, Kia, Volkswagen, BMW, Mercedes, Mercedes-Benz, Daimler, Porsche
Ferrari, Stellantis, Renault, Peugeot, Volvo, Ford, General Motors, Chrysler, Boeing, Airbus, Rolls-Royce, BAE
Siemens, Bosch, BASF, Bayer, SAP, Allianz, Deutsche Bank, Commerzbank, Adidas, Puma, Lufthansa, Nokia, Ericsson
Philips, Shell, BP, ExxonMobil, Exxon, Chevron, TotalEnergies, Total, Eni, Equinor, Repsol, Glencore, Rio Tinto, BHP
Anglo American, Vale, ArcelorMittal, Unilever, Nestle, Nestlé, Danone, Diageo, Heineken, Carlsberg, AB InBev
Coca-Cola, PepsiCo, Procter & Gamble, Johnson & Johnson, Pfizer, Moderna, Merck, Novartis, Roche, AstraZeneca, GSK
GlaxoSmithKline, Sanofi, Novo Nordisk, Eli Lilly, Lilly, AbbVie, Amgen, Gilead, Bristol-Myers, Bristol Myers Squibb
HSBC, Barclays, Lloyds, NatWest, Santander, BNP Paribas, Societe Generale, UBS, Credit Suisse, ING, Rabobank, Nordea
Intesa, UniCredit, BBVA, Standard Chartered, JPMorgan, JPMorgan Chase, Chase, Goldman Sachs, Goldman, Morgan Stanley
Citigroup, Citi, Citibank, Bank of America, Wells Fargo, Charles Schwab, Schwab, BlackRock, Vanguard, Fidelity
State Street, Berkshire Hathaway, Berkshire, Merrill Lynch, Merrill, Raymond James, Edward Jones, Lazard, Rothschild
Jefferies, Nomura, Mizuho, Macquarie, Aviva, Prudential, Legal & General, AXA, Zurich Insurance, Generali, MetLife
Walmart, Target, Costco, Tesco, Sainsbury, Sainsbury's, Morrisons, Asda, Aldi, Lidl, Carrefour, Ahold
Marks & Spencer, Next, Primark, Zara, Inditex, H&M, Nike, Disney, Walt Disney, Comcast, Warner Bros, Paramount
Vodafone, BT, Telefonica, Orange, Deutsche Telekom, Verizon, AT&T, T-Mobile, Huawei, Xiaomi, Alibaba, Tencent, Baidu
JD.com, BYD, TSMC, Foxconn, Infosys, Tata, Reliance, Wipro, HDFC, ICICI, Dow Jones, Dow, Nasdaq, S&P, FTSE, Stoxx
Nikkei, Hang Seng, Bloomberg, Reuters, Moody's, Fitch, McDonald's, McDonalds, Starbucks, Dell, HP, Lenovo, Accenture
Deloitte, KPMG, PwC, EY, Ernst & Young, McKinsey, Lockheed Martin, Lockheed, Raytheon, Northrop Grumman, Caterpillar
Deere, John Deere, 3M, Honeywell, General Electric, Emerson, Estee Lauder, Ralph Lauren, Hugo Boss, Louis Vuitton
LVMH, Hermes, Hermès, Kering, Christian Dior, Dior, Gucci, Prada, Burberry, L'Oreal, L'Oréal, Thomas Cook, John Lewis
Harley-Davidson, Aston Martin, Jaguar, Land Rover, Tata Motors, Ryanair, easyJet, Emirates, Qatar Airways
British Airways, IAG, Freddie Mac, Fannie Mae, Sallie Mae, Ginnie Mae, Henry Schein, Dr Pepper, Kellogg, Kraft Heinz
Mondelez, Mars, Wendy's, Domino's, Kimberly-Clark, Smith & Nephew, Reckitt, Haleon, Burberry, Ocado, Rightmove
Experian, RELX, Pearson, WPP, Compass, Whitbread, Persimmon, Barratt, Taylor Wimpey, Berkeley, Centrica, SSE
National Grid, Severn Trent, United Utilities, Kingfisher, Halma, Intertek, Bunzl, Ashtead, Ferguson, CRH, Flutter
Entain, Jardine Matheson, Swire, Li & Fung, Sumitomo, Mitsubishi, Mitsui, Hitachi, Panasonic, Canon, Nikon, Fujitsu
SoftBank, Rakuten, Nintendo, Yamaha, Suzuki, Mazda, Subaru, Toshiba, Sharp, Kyocera, Fanuc, Keyence, OpenAI
Anthropic, Revolut, Monzo, Starling, Klarna, Stripe, Coinbase, Robinhood, eToro, Nationwide, Firefox, Chrome
Google Chrome, Safari, Edge, Opera, Outlook, Gmail, Hotmail, Yahoo, Excel, Word, PowerPoint, OneNote, OneDrive
SharePoint, Teams, Microsoft Teams, Zoom, Slack, Skype, Windows, Linux, Ubuntu, Debian, Mac, MacOS, iOS, Android
iPhone, iPad, iPod, iTunes, iCloud, Pixel, Galaxy, Kindle, Siri, Cortana, YouTube, Twitter, Instagram, WhatsApp
Telegram, Signal, Messenger, LinkedIn, TikTok, Snapchat, Reddit, Pinterest, Dropbox, Box, Evernote, Trello, Jira
Confluence, GitHub, GitLab, Bitbucket, Docker, Kubernetes, Java, Javascript, JavaScript, Python, Scala, Perl, PHP
Kotlin, Rust, Golang, Node, Flash, Photoshop, Acrobat, Adobe Reader, WordPress, Shopify, Magento, Salesforce, Zendesk
Intercom, HubSpot, Mailchimp, QuickBooks, Xero, SAP, Visa Debit, Apple Pay, Google Pay, Samsung Pay, PayPal, Venmo
Zelle, Cash App, Bitcoin, Ethereum, Settings, Preferences, Trash, Inbox, Outbox, Drafts, Spam, Labels, Calendar
Contacts, Downloads, Desktop, Download, Upload, Navigate, Tools, Wolfram Alpha, Mathematica, Pastebin, Markdown
Kanban, Options, Account Settings, Dashboard, Home, Profile, Menu, Help Centre
""".replace("\n", ",").split(",") if line.strip())

FIELD_WORDS = _words("""
email e-mail mail mobile phone tel telephone fax address name surname dob ni nino ssn iban card account acct customer
client agent subject re fwd note notes ref reference order invoice ticket case hi hello hey dear thanks thank regards
cheers best sincerely yours morning afternoon evening team support admin billing sales help please urgent update
password login user username postcode zip city country street date birth number amount total balance payment transfer
statement policy member membership sort code branch bank click add remove show hide label labels draft drafts range
join select open save delete edit view search filter notifications notification syntax highlighting utils reviews tips
settings tools button link page tab menu option jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu
thurs fri sat sun
""")
