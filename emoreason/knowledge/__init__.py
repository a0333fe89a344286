"""Domain knowledge defined once: the FACS Action Unit table and the emotion taxonomy."""
