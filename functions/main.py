"""Cloud Functions entry points. Cloud Functions loads ``main.py``; each name here is one function."""

from functions.discord_interactions import discord_interactions
from functions.scrape import scrape
from functions.telegram_webhook import telegram_webhook

__all__ = ["discord_interactions", "scrape", "telegram_webhook"]
