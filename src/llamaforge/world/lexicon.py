"""Everyday knowledge for the corpus: tables of true statements, independent of the seeded world.

The world's own pools (entities.py) give a few hundred words; these tables give the corpus the
vocabulary of a children's book (about 1,400 words in all), enough for a 4,096-piece BPE
tokenizer (`train_tokenizer` needs several pieces per distinct word to fill its vocabulary).
Every entry is a plain fact ("a spider has eight legs", "the past of swim is swam"), so later
tasks can ask about them and check answers against these tables.
"""

from __future__ import annotations

__all__ = ["OPPOSITES", "CATEGORIES", "ANIMALS", "USES", "TRADES", "DAYS", "MONTHS", "ORDINALS",
           "SEASONS", "CAPITALS", "PLURALS", "PAST_TENSES", "COLOURS_OF", "MATERIALS", "NAMES",
           "WEATHER", "FEELINGS", "SIGHTS"]

OPPOSITES = (
    ("hot", "cold"), ("tall", "short"), ("fast", "slow"), ("happy", "sad"), ("young", "old"),
    ("wet", "dry"), ("early", "late"), ("full", "empty"), ("hard", "soft"), ("loud", "quiet"),
    ("clean", "dirty"), ("rich", "poor"), ("strong", "weak"), ("open", "closed"), ("near", "far"),
    ("high", "low"), ("thick", "thin"), ("sweet", "sour"), ("day", "night"), ("up", "down"),
    ("first", "last"), ("push", "pull"), ("buy", "sell"), ("give", "take"), ("come", "go"),
    ("start", "stop"), ("laugh", "cry"), ("awake", "asleep"), ("inside", "outside"),
    ("above", "below"), ("before", "after"), ("always", "never"), ("easy", "difficult"),
    ("brave", "afraid"), ("safe", "dangerous"), ("wide", "narrow"), ("deep", "shallow"),
    ("sharp", "blunt"), ("smooth", "rough"), ("cheap", "expensive"), ("true", "false"),
    ("north", "south"), ("east", "west"), ("summer", "winter"), ("heavy", "light"),
    ("remember", "forget"), ("arrive", "leave"), ("question", "answer"), ("friendly", "unfriendly"),
    ("possible", "impossible"), ("polite", "rude"), ("tidy", "messy"), ("generous", "selfish"),
    ("ancient", "modern"), ("entrance", "exit"), ("victory", "defeat"),
)

# category -> members (singular); "piece of"/"part of" categories read "is a piece of furniture"
CATEGORIES = {
    "fruit": ("apple", "pear", "plum", "banana", "cherry", "grape", "lemon", "peach", "melon",
              "mango", "strawberry", "apricot", "pineapple", "raspberry", "coconut"),
    "vegetable": ("carrot", "potato", "onion", "cabbage", "pea", "bean", "leek", "turnip",
                  "lettuce", "cucumber", "pumpkin", "broccoli", "spinach", "celery", "radish"),
    "tool": ("hammer", "saw", "drill", "spade", "rake", "axe", "ladder", "rope", "needle",
             "brush", "shovel", "knife", "screwdriver", "spanner", "chisel", "wheelbarrow"),
    "piece of clothing": ("shirt", "skirt", "sock", "shoe", "boot", "scarf", "glove", "jacket",
                          "dress", "belt", "hat", "coat", "sweater", "trousers", "sandal",
                          "pyjamas"),
    "piece of furniture": ("chair", "table", "bed", "sofa", "desk", "shelf", "cupboard", "stool",
                           "bench", "wardrobe", "armchair", "bookcase", "cradle"),
    "musical instrument": ("drum", "flute", "piano", "violin", "guitar", "trumpet", "harp", "bell",
                           "cello", "clarinet", "trombone", "accordion", "xylophone"),
    "vehicle": ("car", "bus", "train", "truck", "tractor", "plane", "ship", "van", "taxi", "boat",
                "bike", "helicopter", "motorcycle", "scooter", "submarine", "ambulance"),
    "part of the body": ("head", "hand", "foot", "arm", "leg", "knee", "nose", "ear", "eye",
                         "mouth", "finger", "elbow", "shoulder", "tooth", "ankle", "wrist",
                         "stomach", "forehead", "eyebrow", "thumb"),
    "building": ("house", "school", "shop", "church", "castle", "tower", "barn", "mill", "bakery",
                 "library", "hospital", "station", "museum", "theatre", "factory", "cottage",
                 "lighthouse", "palace"),
    "drink": ("water", "milk", "tea", "juice", "coffee", "lemonade", "cocoa", "smoothie"),
    "flower": ("rose", "tulip", "lily", "sunflower", "violet", "daffodil", "orchid", "lavender",
               "buttercup", "dandelion"),
    "tree": ("oak", "elm", "pine", "birch", "willow", "maple", "beech", "chestnut", "cedar"),
    "bird": ("robin", "sparrow", "eagle", "swan", "pigeon", "seagull", "owl", "crow", "penguin",
             "ostrich", "woodpecker", "flamingo", "peacock", "blackbird"),
    "insect": ("ant", "bee", "fly", "beetle", "moth", "butterfly", "ladybird", "wasp",
               "grasshopper", "dragonfly", "mosquito", "caterpillar"),
    "shape": ("circle", "square", "triangle", "rectangle", "oval", "star", "diamond", "hexagon",
              "pentagon"),
    "metal": ("iron", "gold", "silver", "copper", "tin", "steel", "aluminium", "bronze"),
    "game": ("football", "tennis", "chess", "rugby", "hockey", "basketball", "volleyball",
             "badminton"),
}

# species -> (what it says, what it eats, where it lives, legs)
ANIMALS = {
    "dog": ("woof", "bones", "a kennel", 4), "cat": ("meow", "fish", "a house", 4),
    "cow": ("moo", "grass", "a field", 4), "horse": ("neigh", "hay", "a stable", 4),
    "sheep": ("baa", "grass", "a meadow", 4), "pig": ("oink", "scraps", "a sty", 4),
    "duck": ("quack", "weeds", "a pond", 2), "hen": ("cluck", "seeds", "a coop", 2),
    "owl": ("hoot", "mice", "a tree", 2), "frog": ("croak", "flies", "a pond", 4),
    "lion": ("roar", "meat", "a den", 4), "mouse": ("squeak", "cheese", "a hole", 4),
    "goat": ("bleat", "grass", "the hills", 4), "wolf": ("howl", "meat", "the forest", 4),
    "donkey": ("hee-haw", "hay", "a field", 4), "parrot": ("hello", "seeds", "a cage", 2),
    "bee": ("buzz", "nectar", "a hive", 6), "crow": ("caw", "worms", "a nest", 2),
    "elephant": ("trumpet", "leaves", "the savanna", 4), "lamb": ("baa", "grass", "a field", 4),
    "tiger": ("growl", "meat", "the jungle", 4), "bear": ("growl", "berries", "a cave", 4),
    "fox": ("yelp", "rabbits", "a burrow", 4), "squirrel": ("chatter", "nuts", "a tree", 4),
    "camel": ("grunt", "dry plants", "the desert", 4), "penguin": ("squawk", "fish", "Antarctica", 2),
    "dolphin": ("click", "fish", "the ocean", 0), "snake": ("hiss", "eggs", "the grass", 0),
    "turtle": ("hiss", "seaweed", "the sea", 4), "spider": ("nothing", "flies", "a web", 8),
    "giraffe": ("hum", "leaves", "the savanna", 4), "rabbit": ("nothing", "carrots", "a burrow", 4),
}

USES = {
    "cup": "to drink from", "knife": "to cut bread", "spade": "to dig holes", "key": "to open doors",
    "pen": "to write letters", "broom": "to sweep the floor", "needle": "to sew clothes",
    "ladder": "to climb up high", "umbrella": "to stay dry in the rain", "lamp": "to see in the dark",
    "kite": "to play in the wind", "boat": "to cross the water", "clock": "to tell the time",
    "map": "to find the way", "comb": "to tidy your hair", "soap": "to wash your hands",
    "towel": "to dry yourself", "bucket": "to carry water", "spoon": "to eat soup",
    "pillow": "to rest your head", "oven": "to bake cakes", "saw": "to cut wood",
    "thermometer": "to measure temperature", "telescope": "to look at the stars",
    "compass": "to find north", "calendar": "to know the date", "scissors": "to cut paper",
    "microscope": "to see very small things", "envelope": "to send a letter",
    "refrigerator": "to keep food cold", "kettle": "to boil water", "hammer": "to hit nails",
}

TRADES = {
    "baker": "bakes bread and cakes", "farmer": "grows food and keeps animals",
    "teacher": "helps children learn", "doctor": "looks after sick people",
    "painter": "paints pictures", "fisher": "catches fish in the sea",
    "builder": "builds houses and walls", "singer": "sings songs",
    "nurse": "cares for people in hospital", "driver": "drives a bus or a truck",
    "cook": "cooks meals in a kitchen", "tailor": "makes and mends clothes",
    "pilot": "flies planes", "dentist": "looks after teeth", "gardener": "grows flowers and trees",
    "postman": "brings letters and parcels", "sailor": "sails ships across the sea",
    "librarian": "lends books to readers", "vet": "cares for sick animals",
    "plumber": "fixes pipes and taps", "carpenter": "makes furniture from wood",
    "potter": "makes pots from clay", "shepherd": "looks after sheep",
    "miller": "grinds wheat into flour", "astronaut": "travels into space",
    "firefighter": "puts out fires", "photographer": "takes photographs",
    "scientist": "does experiments", "journalist": "writes for newspapers",
    "musician": "plays music", "architect": "designs buildings", "waiter": "serves food in a restaurant",
}

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
            "tenth", "eleventh", "twelfth")
SEASONS = ("winter", "spring", "summer", "autumn")  # in the north: December..February is winter

CAPITALS = {
    "France": "Paris", "Spain": "Madrid", "Italy": "Rome", "Germany": "Berlin",
    "Portugal": "Lisbon", "Greece": "Athens", "Norway": "Oslo", "Sweden": "Stockholm",
    "Finland": "Helsinki", "Denmark": "Copenhagen", "Poland": "Warsaw", "Austria": "Vienna",
    "Hungary": "Budapest", "Ireland": "Dublin", "Egypt": "Cairo", "Kenya": "Nairobi",
    "Japan": "Tokyo", "China": "Beijing", "India": "New Delhi", "Thailand": "Bangkok",
    "Canada": "Ottawa", "Mexico": "Mexico City", "Peru": "Lima", "Chile": "Santiago",
    "Argentina": "Buenos Aires", "Australia": "Canberra", "Russia": "Moscow", "Turkey": "Ankara",
    "Belgium": "Brussels", "Netherlands": "Amsterdam",
}

PLURALS = {
    "mouse": "mice", "man": "men", "woman": "women", "child": "children", "foot": "feet",
    "tooth": "teeth", "goose": "geese", "sheep": "sheep", "fish": "fish", "box": "boxes",
    "baby": "babies", "leaf": "leaves", "knife": "knives", "wolf": "wolves", "city": "cities",
    "person": "people", "potato": "potatoes", "tomato": "tomatoes", "glass": "glasses",
    "church": "churches", "bus": "buses", "party": "parties", "loaf": "loaves", "deer": "deer",
    "ox": "oxen", "cactus": "cacti", "berry": "berries", "dish": "dishes", "wish": "wishes",
    "shelf": "shelves",
}

PAST_TENSES = {
    "walk": "walked", "run": "ran", "eat": "ate", "sing": "sang", "swim": "swam", "go": "went",
    "see": "saw", "write": "wrote", "read": "read", "drink": "drank", "sleep": "slept",
    "buy": "bought", "bring": "brought", "think": "thought", "catch": "caught", "teach": "taught",
    "fly": "flew", "grow": "grew", "know": "knew", "throw": "threw", "draw": "drew",
    "begin": "began", "ride": "rode", "speak": "spoke", "break": "broke", "choose": "chose",
    "forget": "forgot", "find": "found", "build": "built", "feel": "felt", "keep": "kept",
    "meet": "met", "sit": "sat", "stand": "stood", "understand": "understood", "win": "won",
    "jump": "jumped", "play": "played", "climb": "climbed", "laugh": "laughed", "carry": "carried",
    "study": "studied", "hurry": "hurried", "smile": "smiled", "dance": "danced", "open": "opened",
}

COLOURS_OF = (
    ("snow", "white"), ("grass", "green"), ("the sky", "blue"), ("coal", "black"),
    ("milk", "white"), ("a lemon", "yellow"), ("a tomato", "red"), ("a leaf", "green"),
    ("a banana", "yellow"), ("a carrot", "orange"), ("a plum", "purple"), ("chocolate", "brown"),
    ("the sea", "blue"), ("a strawberry", "red"), ("mud", "brown"), ("ash", "grey"),
    ("a pumpkin", "orange"), ("a crow", "black"), ("a swan", "white"), ("an elephant", "grey"),
    ("lavender", "purple"), ("a flamingo", "pink"), ("a frog", "green"), ("sand", "yellow"),
)

MATERIALS = (
    ("a table", "wood"), ("a window", "glass"), ("a coin", "metal"), ("a candle", "wax"),
    ("a sweater", "wool"), ("a book", "paper"), ("a wall", "bricks"), ("a bottle", "glass"),
    ("a pot", "clay"), ("a spoon", "metal"), ("a shoe", "leather"), ("a tyre", "rubber"),
    ("a shirt", "cotton"), ("a bridge", "stone"), ("a snowman", "snow"), ("a basket", "straw"),
)

# first names for lists and sorting (not inhabitants of the world)
NAMES = (
    "Abigail", "Alexander", "Amelia", "Arthur", "Beatrice", "Benjamin", "Charlotte", "Christopher",
    "Daniel", "Dorothy", "Edward", "Eleanor", "Elizabeth", "Frederick", "Gabriel", "Georgina",
    "Harriet", "Isabella", "Jasmine", "Jonathan", "Katherine", "Lawrence", "Margaret", "Matthew",
    "Natalie", "Nicholas", "Penelope", "Patrick", "Rebecca", "Richard", "Samantha", "Sebastian",
    "Theodore", "Thomas", "Valentina", "Vincent", "Winifred", "Zachary", "Florence", "Harrison",
)

WEATHER = ("The sun was shining.", "It was a sunny day.", "The sky was cloudy.", "It was raining.",
           "It was windy.", "Snow was falling.", "It was foggy.", "The air was warm.",
           "It was a chilly morning.", "There was a storm in the night.", "The weather was mild.",
           "A rainbow appeared in the sky.", "It was freezing outside.")
FEELINGS = ("happy", "glad", "tired", "hungry", "thirsty", "proud", "surprised", "excited",
            "calm", "sleepy", "cheerful", "curious", "grateful", "nervous", "relieved", "delighted")
SIGHTS = ("a tall tree", "an old mill", "a little bird", "a yellow flower", "a wooden bridge",
          "a busy market", "a quiet meadow", "a stone wall", "a small stream", "a field of wheat",
          "a red tractor", "a flock of sheep", "a lighthouse", "an orchard", "a windmill",
          "a church tower", "a garden full of roses", "a group of children", "a sleeping cat")
