"""Development tooling of the flows platform, never in its image: real local services
(PostgreSQL, SeaweedFS as S3) for the tests, and the local stack behind `flows stack`.

Import what you use from its modules (`devstack.ports`, `devstack.postgres`,
`devstack.seaweedfs`, `devstack.stack`): this package imports nothing itself, so the `flows`
CLI loading `devstack.cli` as a plugin stays as fast as without it.
"""
