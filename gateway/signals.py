"""Keep the in-memory key cache honest, and never let a chain deletion widen a key."""

from __future__ import annotations

import logging

from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete
from django.utils import timezone

from gateway.models import GatewayKey
from gateway.services.key_cache import keys_changed
from providers.models import FallbackChain

log = logging.getLogger("rana.gateway")


def revoke_keys_left_without_chains(sender, instance: FallbackChain, **_kwargs) -> None:
    """A key limited to chains that are all being deleted is revoked, not widened to "every chain"."""
    for key in GatewayKey.objects.filter(allowed_chains=instance, revoked_at__isnull=True):
        if not key.allowed_chains.exclude(pk=instance.pk).exists():
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
            log.warning("gateway key %s revoked: its only allowed chain %s was deleted", key.prefix, instance)


def connect() -> None:
    post_save.connect(keys_changed, sender=GatewayKey, dispatch_uid="rana-gateway-key-save")
    post_delete.connect(keys_changed, sender=GatewayKey, dispatch_uid="rana-gateway-key-delete")
    m2m_changed.connect(
        keys_changed, sender=GatewayKey.allowed_chains.through, dispatch_uid="rana-gateway-key-chains"
    )
    pre_delete.connect(
        revoke_keys_left_without_chains, sender=FallbackChain, dispatch_uid="rana-gateway-chain-delete"
    )
    post_delete.connect(keys_changed, sender=FallbackChain, dispatch_uid="rana-gateway-chain-deleted")
