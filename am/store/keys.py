"""Users' SSH keys per slice (geni_users)."""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from am.store.models import UserKey
from am.store.sessions import Repository
from drivers.base import UserKeys


class UserKeyRepository(Repository):
    def put_user_keys(self, session: Session, slice_id: int, users: Iterable[UserKeys]) -> None:
        """geni_users semantics: listed users' keys are replaced, unlisted users untouched."""
        for user in users:
            session.execute(delete(UserKey).where(UserKey.slice_id == slice_id,
                                                  UserKey.user_urn == user.urn))
            for key in dict.fromkeys(user.keys):
                session.add(UserKey(slice_id=slice_id, user_urn=user.urn, key=key))
        session.flush()

    def user_keys(self, session: Session, slice_id: int) -> tuple[UserKeys, ...]:
        by_user: dict[str, list[str]] = {}
        for user_urn, key in session.connection().execute(_USER_KEYS, {"slice": slice_id}):
            by_user.setdefault(user_urn, []).append(key)
        return tuple(UserKeys(urn=u, keys=tuple(k)) for u, k in by_user.items())


_USER_KEYS = (select(UserKey.__table__.c.user_urn, UserKey.__table__.c.key)
              .where(UserKey.__table__.c.slice_id == bindparam("slice"))
              .order_by(UserKey.__table__.c.id))
