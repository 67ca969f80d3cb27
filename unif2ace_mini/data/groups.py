"""The SynthFaces attribute table and its consistency rules: the one place that says what exists.

Each group lists its values as (value, sampling weight, caption phrases...). A value with no
phrase is never written in a caption (it can still be asked about in VQA). Phrases must be
unambiguous across the whole table because the caption parser maps them back (tests check it).

Caption frames say how a group's phrases sit in a sentence:
  has    "They have <a round face>"          wears  "They are wearing <round glasses>"
  is     "They are <smiling>"                looks  "They look <happy>"
  bg     "Shown against <a pink background>" hair   adjectives merged: "long, curly red hair"

Left / right (head turn, tilt) are from the viewer's side of the image.
"""

from __future__ import annotations

from .taxonomy import Group, Rule, Taxonomy

COLOR, KIND, BINARY = "what_color", "which_kind", "yes_no"


def G(name, family, frame, question, values, presence=None, qtype=KIND, identity=False,
      absent=None, count=None):
    vals = tuple(v[0] for v in values)
    return Group(name=name, family=family, frame=frame, question=question, qtype=qtype,
                 values=vals, weights=tuple(float(v[1]) for v in values),
                 phrases={v[0]: tuple(v[2:]) for v in values}, presence=presence,
                 identity=identity, absent=absent, count=count)


def binary(name, family, question, no_phrases, yes_phrases, p_yes, frame="has"):
    return G(name, family, frame, question, [("no", 1 - p_yes, *no_phrases),
                                             ("yes", p_yes, *yes_phrases)],
             qtype=BINARY, absent="no")


HAIR_COLORS = ["black", "brown", "blonde", "red", "gray", "white"]
EYE_COLORS = ("brown", "blue", "green", "gray")

GROUPS = (
    # --- identity: fixed per person ---------------------------------------------------------
    G("face_shape", "appearance", "has", "What shape is the person's face?", [
        ("oval", 1, "an oval face", "an oval-shaped face"),
        ("round", 1, "a round face", "a rounded face"),
        ("square", 1, "a square face", "a square jaw"),
        ("heart", 1, "a heart-shaped face", "a face shaped like a heart")], identity=True),
    G("skin_tone", "appearance", "has", "What is the person's skin tone?", [
        ("pale", 1, "pale skin", "porcelain skin"),
        ("light", 1, "light skin", "fair skin"),
        ("medium", 1, "a medium skin tone", "medium skin"),
        ("tan", 1, "tan skin", "a tanned complexion"),
        ("brown", 1, "brown skin", "a brown complexion"),
        ("dark", 1, "dark skin", "a deep dark complexion")], qtype=COLOR, identity=True),
    G("nose", "appearance", "has", "Is the person's nose small or large?", [
        ("small", 1, "a small nose", "a button nose"),
        ("large", 1, "a large nose", "a prominent nose")], identity=True),
    # --- hair -------------------------------------------------------------------------------
    binary("bald", "appearance", "Is the person bald?",
           ["a full head of hair"], ["a bald head", "a completely bald head"], 0.12),
    G("hair_color", "appearance", "hair", "What colour is the person's hair?", [
        ("black", .20, "black", "jet-black"), ("brown", .22, "brown", "chestnut-brown"),
        ("blonde", .18, "blonde", "golden-blonde"), ("red", .12, "red", "ginger"),
        ("gray", .14, "gray", "silver-gray"), ("white", .14, "white", "snow-white"),
        ("none", 0)], qtype=COLOR, absent="none"),
    G("hair_length", "appearance", "hair", "How long is the person's hair?", [
        ("short", 1, "short", "cropped"), ("medium", 1, "medium-length", "shoulder-length"),
        ("long", 1, "long", "extra-long"), ("none", 0)], absent="none"),
    G("hair_type", "appearance", "hair", "Is the person's hair straight, wavy or curly?", [
        ("straight", 1, "straight", "sleek"), ("wavy", 1, "wavy", "softly wavy"),
        ("curly", 1, "curly", "tightly curled"), ("none", 0)], absent="none"),
    G("bangs", "appearance", "has", "What kind of bangs does the person have?", [
        ("none", 3, "no bangs", "no fringe"),
        ("straight", 1, "straight bangs", "a blunt fringe"),
        ("side-swept", 1, "side-swept bangs", "a side fringe")],
      presence="Does the person have bangs?", absent="none"),
    G("hairline", "appearance", "has", "What kind of hairline does the person have?", [
        ("normal", 2, "a regular hairline", "a normal hairline"),
        ("receding", 1, "a receding hairline", "a high, receding hairline"),
        ("widow's peak", 1, "a widow's peak", "a pointed widow's peak hairline"),
        ("none", 0)], absent="none"),
    # --- facial hair and skin ---------------------------------------------------------------
    G("mask", "appearance", "wears", "What kind of face mask is the person wearing?", [
        ("none", 8, "no face mask", "no mask"),
        ("surgical", 1, "a surgical mask", "a light blue surgical mask"),
        ("cloth", 1, "a black cloth mask", "a cloth face mask")],
      presence="Is the person wearing a face mask?", absent="none"),
    G("beard", "appearance", "has", "What kind of beard does the person have?", [
        ("none", 5, "no beard", "a clean-shaven chin"),
        ("5 o'clock shadow", 1.4, "a 5 o'clock shadow", "light stubble"),
        ("goatee", 1.4, "a goatee", "a small goatee"),
        ("full", 1.4, "a full beard", "a thick full beard")],
      presence="Does the person have a beard?", absent="none"),
    G("mustache", "appearance", "has", "What kind of mustache does the person have?", [
        ("none", 5, "no mustache", "a bare upper lip"),
        ("thin", 1.6, "a thin mustache", "a pencil mustache"),
        ("thick", 1.6, "a thick mustache", "a bushy mustache")],
      presence="Does the person have a mustache?", absent="none"),
    binary("sideburns", "appearance", "Does the person have sideburns?",
           ["no sideburns"], ["sideburns", "long sideburns"], 0.3),
    binary("freckles", "appearance", "Does the person have freckles?",
           ["no freckles"], ["freckles", "a sprinkle of freckles"], 0.3),
    binary("wrinkles", "appearance", "Does the person have wrinkles?",
           ["no wrinkles", "smooth, unlined skin"], ["wrinkles", "visible wrinkles"], 0.3),
    binary("rosy_cheeks", "appearance", "Does the person have rosy cheeks?",
           ["cheeks without blush"], ["rosy cheeks", "blushing cheeks"], 0.3),
    G("eyebrows", "appearance", "has", "Are the person's eyebrows thin or thick?", [
        ("thin", 1, "thin eyebrows", "slim brows"),
        ("thick", 1, "thick eyebrows", "bushy brows")]),
    # --- accessories and clothes ------------------------------------------------------------
    G("glasses", "appearance", "wears", "What kind of glasses is the person wearing?", [
        ("none", 3, "no glasses", "no eyewear"),
        ("rectangular", 1, "rectangular glasses", "square-framed glasses"),
        ("round", 1, "round glasses", "round-rimmed spectacles"),
        ("sunglasses", 1, "sunglasses", "dark sunglasses")],
      presence="Is the person wearing glasses?", absent="none"),
    G("hat", "appearance", "wears", "What kind of hat is the person wearing?", [
        ("none", 3.5, "no hat", "nothing on their head"),
        ("cap", 1, "a cap", "a baseball cap"),
        ("beanie", 1, "a beanie", "a knitted beanie"),
        ("top hat", 1, "a top hat", "a tall top hat")],
      presence="Is the person wearing a hat?", absent="none"),
    G("earrings", "appearance", "wears", "What kind of earrings is the person wearing?", [
        ("none", 2.4, "no earrings", "no ear jewelry"),
        ("studs", 1, "stud earrings", "small studs"),
        ("hoops", 1, "hoop earrings", "large hoops")],
      presence="Is the person wearing earrings?", absent="none",
      count="How many earrings can be seen?"),
    G("necklace", "appearance", "wears", "What kind of necklace is the person wearing?", [
        ("none", 3, "no necklace", "a bare neck"),
        ("chain", 1, "a gold chain", "a golden chain necklace"),
        ("pearls", 1, "a pearl necklace", "a string of pearls")],
      presence="Is the person wearing a necklace?", absent="none"),
    G("lipstick", "appearance", "wears", "What colour is the person's lipstick?", [
        ("none", 3, "no lipstick", "no lip color"),
        ("red", 1, "red lipstick", "bright red lipstick"),
        ("pink", 1, "pink lipstick", "rosy pink lipstick"),
        ("purple", 1, "purple lipstick", "plum lipstick")],
      presence="Is the person wearing lipstick?", qtype=COLOR, absent="none"),
    G("clothing", "appearance", "wears", "What kind of top is the person wearing?", [
        ("t-shirt", 1, "a t-shirt", "a crew-neck t-shirt"),
        ("v-neck", 1, "a v-neck top", "a v-neck shirt"),
        ("collared", 1, "a collared shirt", "a shirt with a collar"),
        ("turtleneck", 1, "a turtleneck", "a turtleneck sweater")]),
    G("clothing_color", "appearance", "wears", "What colour are the person's clothes?", [
        ("black", 1, "black clothes", "an all-black outfit"),
        ("red", 1, "red clothes", "a red outfit"),
        ("blue", 1, "blue clothes", "a navy blue outfit"),
        ("green", 1, "green clothes", "a green outfit"),
        ("yellow", 1, "yellow clothes", "a mustard-yellow outfit")], qtype=COLOR),
    G("background", "appearance", "bg", "What colour is the background?", [
        ("white", 1, "a white background", "a plain white backdrop"),
        ("gray", 1, "a gray background", "a neutral gray backdrop"),
        ("blue", 1, "a light blue background", "a sky-blue backdrop"),
        ("green", 1, "a light green background", "a mint-green backdrop"),
        ("yellow", 1, "a pale yellow background", "a cream-yellow backdrop"),
        ("pink", 1, "a pink background", "a soft pink backdrop")], qtype=COLOR),
    # --- emotion ----------------------------------------------------------------------------
    G("emotion", "emotion", "looks", "What emotion does the person show?", [
        ("neutral", 1, "expressionless", "calm"),
        ("happy", 1, "happy", "cheerful"),
        ("surprised", 1, "surprised", "astonished"),
        ("angry", 1, "angry", "furious"),
        ("sad", 1, "sad", "unhappy")]),
    # --- actions ----------------------------------------------------------------------------
    G("mouth", "action", "is", "What is the person's mouth doing?", [
        ("closed", 1, "keeping their mouth closed", "tight-lipped"),
        ("smile", 1, "smiling", "smiling gently"),
        ("laugh", 1, "laughing", "laughing out loud"),
        ("open", 1, "open-mouthed", "gaping with the mouth open"),
        ("frown", 1, "frowning", "pulling a frown"),
        ("tongue out", 1, "sticking out their tongue", "poking their tongue out"),
        ("covered", 1)]),   # hidden by a mask: never captioned, still a VQA answer
    G("eyes", "action", "is", "What are the person's eyes doing?", [
        ("open", 2, "looking with open eyes", "keeping both eyes open"),
        ("wink", 1, "winking", "giving a wink"),
        ("closed", 1, "keeping their eyes closed", "resting their eyes"),
        ("glare", 1, "glaring", "staring with narrowed eyes")],
      count="How many of the person's eyes are closed?"),
    # after `eyes`: closed eyes hide the colour, so the image says "not visible" (the identity
    # keeps its colour); weight 0, so no identity is drawn with it
    G("eye_color", "appearance", "has", "What colour are the person's eyes?", [
        ("brown", 1, "brown eyes", "dark brown eyes"),
        ("blue", 1, "blue eyes", "bright blue eyes"),
        ("green", 1, "green eyes", "emerald eyes"),
        ("gray", 1, "gray eyes", "steel-gray eyes"),
        ("not visible", 0)], qtype=COLOR, identity=True),
    G("head_turn", "action", "is", "Which way is the person's head turned?", [
        ("forward", 2, "facing the camera", "looking straight at the camera"),
        ("left", 1, "turned to the left", "turning their head left"),
        ("right", 1, "turned to the right", "turning their head right")]),
    G("head_tilt", "action", "is", "Which way is the person's head tilted?", [
        ("upright", 2, "holding their head upright", "keeping the head level"),
        ("left", 1, "tilting their head to the left", "tilting their head left"),
        ("right", 1, "tilting their head to the right", "tilting their head right")]),
)

HAIR_PARTS = ("hair_color", "hair_length", "hair_type", "hairline")
ALL_HAIR_COLORS = frozenset(HAIR_COLORS)
COVERED_BY_MASK = {"mouth": {"covered"}, "lipstick": {"none"}, "mustache": {"none"},
                   "beard": {"none"}}
MOUTH_FOR_EMOTION = {   # "covered" is always allowed: a mask hides the mouth of any emotion
    "neutral": {"closed", "open", "tongue out"}, "happy": {"smile", "laugh", "tongue out"},
    "surprised": {"open"}, "angry": {"closed", "frown", "open"}, "sad": {"frown", "closed"}}
EYES_FOR_EMOTION = {
    "neutral": {"open", "wink", "closed"}, "happy": {"open", "wink", "closed"},
    "surprised": {"open"}, "angry": {"glare", "open"}, "sad": {"open", "closed"}}


def _rules() -> tuple[Rule, ...]:
    """Every consistency rule: if <group> takes one of <values> then <other> must be in <allowed>."""
    rules = []
    for part in HAIR_PARTS + ("bangs",):
        rules.append(Rule("bald", ("yes",), part, ("none",)))
    hair_values = {g.name: g.values for g in GROUPS}
    for part in HAIR_PARTS:
        rules.append(Rule("bald", ("no",), part, tuple(v for v in hair_values[part] if v != "none")))
    rules.append(Rule("bangs", ("straight", "side-swept"), "hairline", ("normal",)))
    for group, allowed in COVERED_BY_MASK.items():
        rules.append(Rule("mask", ("surgical", "cloth"), group, tuple(sorted(allowed))))
    rules.append(Rule("mask", ("none",), "mouth",
                      tuple(v for v in hair_values["mouth"] if v != "covered")))
    for emotion, mouths in MOUTH_FOR_EMOTION.items():
        rules.append(Rule("emotion", (emotion,), "mouth", tuple(sorted(mouths | {"covered"}))))
    for emotion, eyes in EYES_FOR_EMOTION.items():
        rules.append(Rule("emotion", (emotion,), "eyes", tuple(sorted(eyes))))
    rules.append(Rule("eyes", ("closed",), "eye_color", ("not visible",)))
    rules.append(Rule("eyes", ("open", "wink", "glare"), "eye_color", EYE_COLORS))
    return tuple(rules)


RULES = _rules()

# Attribute pairs that never occur together in train/validation/test; every compositional
# image shows exactly one of them (round-robin), so they test generalisation to new combinations.
COMPOSITIONAL_PAIRS = (
    (("hair_color", "red"), ("glasses", "sunglasses")),
    (("hat", "beanie"), ("beard", "full")),
    (("lipstick", "purple"), ("necklace", "pearls")),
    (("mouth", "tongue out"), ("eyes", "wink")),
)

TAXONOMY = Taxonomy(GROUPS, RULES, COMPOSITIONAL_PAIRS)
