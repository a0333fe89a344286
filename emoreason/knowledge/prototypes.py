"""AU -> emotion prototypes (EMFACS-style): which Action Units make up each basic expression, and which contradict it.

Each prototype is defined once here and read by the reasoning engine's soft matcher
(:func:`emoreason.reasoning.fusion.face_scores`). Weights: 1.0 for the AUs the source lists as the core of the
prediction, 0.5 for the AUs it lists as optional or alternative. AUs that perception does not estimate (AU16, AU24) stay
in the table as knowledge and drop out of the match when the evidence has no series for them.
"""

from __future__ import annotations

from types import MappingProxyType

# Core and optional AUs per emotion.
# Source: Friesen & Ekman (1983) EMFACS-7 emotion predictions, as tabulated in Lucey et al. (2010) "The Extended
# Cohn-Kanade Dataset (CK+)", Table 2 (happiness 6+12; sadness 1+4+15; surprise 1+2+5B+26; fear 1+2+4+5+7+20+26;
# anger 4+5+7+23; disgust 9 or 10, +15+16 optional in the EMFACS list; contempt R12A+R14A).
PROTOTYPES: MappingProxyType[str, MappingProxyType[str, float]] = MappingProxyType({
    "happiness": MappingProxyType({"AU6": 1.0, "AU12": 1.0, "AU25": 0.25}),
    "sadness": MappingProxyType({"AU1": 1.0, "AU4": 1.0, "AU15": 1.0, "AU17": 0.5}),
    "surprise": MappingProxyType({"AU1": 1.0, "AU2": 1.0, "AU5": 1.0, "AU26": 1.0, "AU25": 0.5}),
    "fear": MappingProxyType({"AU1": 1.0, "AU2": 1.0, "AU4": 1.0, "AU5": 1.0, "AU7": 0.5, "AU20": 1.0, "AU26": 0.5}),
    "anger": MappingProxyType({"AU4": 1.0, "AU5": 0.5, "AU7": 1.0, "AU23": 1.0, "AU24": 0.5, "AU17": 0.25}),
    "disgust": MappingProxyType({"AU9": 1.0, "AU10": 0.5, "AU15": 0.5, "AU16": 0.5, "AU17": 0.25}),
    # Contempt is unilateral in FACS (R12A+R14A); perception gives bilateral intensities, so the match is weak by design.
    "contempt": MappingProxyType({"AU14": 1.0, "AU12": 0.25}),
})  # fmt: skip

# AUs whose presence argues against an emotion (antagonistic actions: the smile's zygomaticus against the lip corner
# depressor, the brow lowerer against the brow raisers of surprise).
# Source: the same EMFACS table read in reverse, and Ekman & Friesen (1978) FACS manual on antagonistic AU pairs
# (AU12 vs AU15, AU1+2 vs AU4).
CONTRADICTIONS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType({
    "happiness": ("AU15", "AU4"),
    "sadness": ("AU12", "AU2"),
    "surprise": ("AU4", "AU15", "AU9"),
    "fear": ("AU12", "AU9"),
    "anger": ("AU12", "AU1", "AU2"),
    "disgust": ("AU12", "AU1", "AU2"),
    "contempt": ("AU6", "AU15"),
})  # fmt: skip

# Smile quality. Source: Ekman, Davidson & Friesen (1990) "The Duchenne smile" (AU6 with AU12 marks felt enjoyment);
# Schmidt, Ambadar, Cohn & Reed (2006) and Cohn & Schmidt (2004): deliberate smiles have faster onsets than spontaneous
# ones (spontaneous onset about 0.5 s or longer).
DUCHENNE_AU = "AU6"
SMILE_AU = "AU12"
FAST_ONSET_S = 0.3  # an AU12 onset (onset -> apex) quicker than this reads as deliberate

# Micro-expressions. Source: Yan, Wu, Liu, Wang & Fu (2013) "How fast are the leaked facial expressions" and CASME II
# (Yan et al. 2014): a micro-expression lasts 1/25 s to 0.5 s in total.
MICRO_MAX_S = 0.5
