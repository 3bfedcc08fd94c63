import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from core.wsgi import Application  # after the settings module is named

application = Application()
