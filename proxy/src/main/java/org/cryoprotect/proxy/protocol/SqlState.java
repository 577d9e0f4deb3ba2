package org.cryoprotect.proxy.protocol;

/** SQLSTATE codes the proxy raises itself, named after PostgreSQL's errcodes.txt. */
public enum SqlState {
  PROTOCOL_VIOLATION("08P01"),
  CONNECTION_FAILURE("08006"),
  TRANSACTION_RESOLUTION_UNKNOWN("08007"),
  IN_FAILED_SQL_TRANSACTION("25P02"),
  SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION("08001"),
  INVALID_AUTHORIZATION_SPECIFICATION("28000"),
  INVALID_PASSWORD("28P01"),
  TOO_MANY_CONNECTIONS("53300"),
  CANNOT_CONNECT_NOW("57P03"),
  ADMIN_SHUTDOWN("57P01"),
  QUERY_CANCELED("57014"),
  INVALID_CATALOG_NAME("3D000"),
  FEATURE_NOT_SUPPORTED("0A000"),
  READ_ONLY_SQL_TRANSACTION("25006"),
  SYNTAX_ERROR("42601"),
  INTERNAL_ERROR("XX000");

  private final String code;

  SqlState(String code) {
    this.code = code;
  }

  public String code() {
    return code;
  }
}
