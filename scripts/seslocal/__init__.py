"""Local Amazon SES v2 endpoint used by Ferry's end-to-end tests.

The entry point is scripts/ses-local, whose docstring describes the command
line, the SES v2 operations served and the /_ferry/ control interface.
"""
