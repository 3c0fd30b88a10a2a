"""smtpfront: an SMTP submission front end for qmail, in the manner of mailfront."""

__version__ = "0.1.0"
