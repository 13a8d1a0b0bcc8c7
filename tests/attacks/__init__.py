"""Attacks as tests (issue: custody and access that no participant can get around). Each module tries one
area the way a hostile participant would — another company's battery, a forged or odd token, an ID someone
else chose, a huge or strange body, a value at the edge — and asserts the rule holds and that a rejected
request changed nothing. Each module's docstring lists its attacks: what they did before, what they do now."""
