"""Password hashing for the dashboard's labelers and admins: argon2id (argon2-cffi), never the plain password.

    digest = hash_password("correct horse battery")   # "$argon2id$v=19$m=65536,t=3,p=4$..."
    verify_password(digest, "correct horse battery")  # True
    password_problem("alice", "alice123")            # "... must not contain the user name ..." or None

Store.add_annotator and Store.authenticate use these; nothing else needs to.
"""

from __future__ import annotations

from functools import cache

MIN_PASSWORD_CHARS = 10  # NIST SP 800-63B asks for at least 8; length beats composition rules
MAX_PASSWORD_CHARS = 1_024  # hashing is slow on purpose; a megabyte "password" should not cost the server
_COMMON = frozenset(
    {"password", "password1", "password123", "1234567890", "0123456789", "qwertyuiop", "letmein123", "iloveyou12"}
)


@cache
def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id with the library's current RFC 9106 defaults


def password_problem(name: str, password: str) -> str | None:
    """What is wrong with this password for this user, or None when it is acceptable."""
    if not password or not password.strip():
        return f"the password is empty; choose one of at least {MIN_PASSWORD_CHARS} characters"
    if len(password) < MIN_PASSWORD_CHARS:
        return f"it has {len(password)} characters; use at least {MIN_PASSWORD_CHARS} (a short sentence works)"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"it has {len(password)} characters; use at most {MAX_PASSWORD_CHARS}"
    if name and name.lower() in password.lower():
        return "the password must not contain the user name; choose another"
    if len(set(password)) < 4 or password.lower() in _COMMON:
        return "the password is too easy to guess (a common password or few distinct characters); choose another"
    return None


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(digest: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(digest, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(digest: str) -> bool:
    """True when the hash was made with weaker parameters than the library's current defaults."""
    return _hasher().check_needs_rehash(digest)


@cache
def dummy_hash() -> str:
    """A hash to verify against when the user does not exist, so a wrong name costs as long as a wrong password
    (no user enumeration by timing)."""
    return hash_password("not a real password, only for timing")
