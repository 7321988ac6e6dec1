"""Plain types and pure rules: papers, profiles, schedules, addresses, text, tokens.

Nothing here does I/O or imports the database, the web or the mail; everything else may
import it.
"""
