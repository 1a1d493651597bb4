import time

from django.core.management.base import BaseCommand, CommandError

from campaigns.sending import sweep


class Command(BaseCommand):
    help = (
        "Recover sending after crashes and lost jobs: expired leases become sent (with evidence), "
        "queued again (never handed to the ESP) or uncertain, never resent; stalled running "
        "campaigns get their queued work enqueued again; finished ones complete. Run it every "
        "minute (cron), or with --every."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--every",
            type=int,
            default=0,
            help="Keep running, sweeping every this many seconds (0: sweep once).",
        )

    def handle(self, *args, every: int, **options):
        if every < 0:
            raise CommandError("--every must be 0 or more seconds.")
        while True:
            report = sweep()
            self.stdout.write(
                "Swept: {recovered_sent} recovered as sent, {requeued} never handed to the ESP "
                "and queued again, {uncertain} uncertain, "
                "{cancelled} cancelled, {batches} batches enqueued again, "
                "{completed} campaigns completed.".format(**report)
            )
            if not every:
                return
            time.sleep(every)
