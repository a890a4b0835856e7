"""FAX.PLUS API v3 names (docs/providers/faxplus.md), shared by the adapter and the sandbox.

Unconfirmed names are marked; when the real service says otherwise, change them here only.
"""

from __future__ import annotations

BASE_URL = "https://restapi.fax.plus/v3"
USER_ID = "self"

# Paths, relative to the base URL (which includes /v3).
FILES_PATH = "/accounts/{user_id}/files"
OUTBOX_PATH = "/accounts/{user_id}/outbox"
OUTBOX_ITEM_PATH = "/accounts/{user_id}/outbox/{outbox_id}"
FAXES_PATH = "/accounts/{user_id}/faxes"
FAX_PATH = "/accounts/{user_id}/faxes/{fax_id}"
HOOKS_PATH = "/hooks"
HOOK_PATH = "/hooks/{hook_id}"

CLIENT_ID_HEADER = "x-fax-clientid"
PAT_PREFIX = "alohi_pat_"
UPLOAD_FIELD = "fax_file"
NO_NUMBER = "no_number"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

MAX_FILES = 10
MAX_DESTINATIONS = 4000

# Error codes in the body {"error": code, "description": text} (the body shape is unconfirmed).
ERROR_INVALID_TOKEN = "invalid_token"
ERROR_TOO_MANY_FILES = "too_many_files"
ERROR_TOO_MANY_DESTINATIONS = "too_many_destinations"
ERROR_INVALID_NUMBER = "invalid_number"  # unconfirmed
ERROR_INVALID_FILE = "invalid_file"  # unconfirmed
ERROR_NOT_FOUND = "not_found"  # unconfirmed
ERROR_RATE_LIMITED = "too_many_requests"  # unconfirmed: no documented 429
ERROR_INTERNAL = "internal_server_error"  # unconfirmed

# Outbox record statuses (no terminal one: the record disappears when transmission ends).
OUTBOX_STATUSES = ("submitted", "converting", "scheduled_for_sending", "sending")

# Fax record (CDR) statuses, SDK 3.0.5 enum; everything here is final.
STATUS_SUCCESS = "success"
STATUS_PARTIALLY_SENT = "partially_sent"
FAX_STATUSES = (
    "success",
    "partially_sent",
    "partially_received",
    "insufficient_credit",
    "failed",
    "failed_internal_process_error",
    "failed_user_busy",
    "failed_no_answer",
    "failed_unallocated_number",
    "failed_invalid_number_format",
    "failed_destination_not_supported",
    "failed_office_converter_issue",
    "failed_separate_file_pages_issue",
    "failed_render_header_issue",
    "failed_mimetype_not_supported",
    "failed_image_preparation",
    "failed_unknown_converter_issue",
    "failed_convert_to_tiff_issue",
    "failed_to_send",
    "failed_normal_temporary_failure",
    "failed_normal_clearing",
    "failed_fs_49",
    "failed_fs_2",
)

WEBHOOK_EVENT_FAX_SENT = "fax_sent"

# Added for the adapter.
COMMENT_TAG = "fax-dispatcher"  # our tag on every send's comment; the text is our reference
LIST_LIMIT = 50  # the largest page GET /faxes allows
# Sandbox extension, not in the public reference: an outbox record's per-destination fax ids
# ({number: fax_id}, as returned by ``return_ids``), so a fax still in the outbox can be
# found, and cancelled, by its fax id.
OUTBOX_FAX_IDS = "fax_ids"
