"""Every problem code the services answer, with its title in English and Korean and a Korean detail: data only
(no I/O, no web framework), so that the pure lifecycle machine takes its refusals' titles from here too.

The English detail is the sentence the raising code writes (it names the values involved); the Korean one is
written here per code from the problem's own members (`{field}` is the first field its `errors` name; any other
`{name}` is an extension member), so it names the same values. `shared.i18n_problems` chooses the language;
`tests/test_problem_i18n.py` walks every code the code base can raise and fails on one this catalogue lacks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Text:
    title_en: str
    title_ko: str
    detail_ko: str  # a template over the problem's members (str.format names)


def _t(title_en: str, title_ko: str, detail_ko: str) -> Text:
    return Text(title_en, title_ko, detail_ko)


CATALOGUE: dict[str, Text] = {
    # ---- generic (shared/problems.py) ----
    "bad-request": _t("Bad request", "잘못된 요청", "요청을 해석할 수 없습니다."),
    "error": _t("Error", "오류", "요청을 처리하지 못했습니다."),
    "not-found": _t("Not found", "찾을 수 없음", "요청한 대상을 찾을 수 없습니다."),
    "method-not-allowed": _t(
        "Method not allowed", "허용되지 않는 메서드", "이 경로에서는 이 HTTP 메서드를 쓸 수 없습니다."
    ),
    "conflict": _t("Conflict", "충돌", "현재 상태와 충돌하여 처리할 수 없습니다."),
    "validation-error": _t(
        "Invalid request", "요청 값 오류", "{field}: 값이 규칙({rule})에 맞지 않습니다. errors 항목을 확인하십시오."
    ),
    "invalid-value": _t(
        "Invalid request", "저장할 수 없는 값", "요청의 값을 저장할 수 없습니다(NUL 문자나 범위를 벗어난 숫자 등)."
    ),
    "unauthorized": _t("Authentication required", "인증 필요", "이 요청에는 유효한 Bearer 토큰이 필요합니다."),
    "forbidden": _t("Not allowed", "권한 없음", "이 역할 또는 참여자는 이 작업을 할 수 없습니다."),
    "unavailable": _t(
        "Temporarily unavailable",
        "일시적으로 사용할 수 없음",
        "연결된 서비스를 일시적으로 사용할 수 없습니다. 잠시 후 다시 시도하십시오.",
    ),
    "internal-error": _t("Internal error", "내부 오류", "서버 내부 오류가 발생했습니다."),
    "payload-too-large": _t("Payload too large", "요청 본문이 너무 큼", "요청 본문이 이 경로의 한도를 넘습니다."),
    "unsupported-media-type": _t(
        "Unsupported media type", "지원하지 않는 미디어 유형", "이 경로는 이 Content-Type을 받지 않습니다."
    ),
    "too-many-requests": _t(
        "Too many requests", "요청이 너무 많음", "요청 한도를 넘었습니다. 잠시 후 다시 시도하십시오."
    ),
    "busy": _t(
        "Temporarily unavailable", "처리 중인 요청이 많음", "큰 요청이 많이 처리 중입니다. 잠시 후 다시 시도하십시오."
    ),
    # ---- identity (shared/auth.py, shared/participants.py, shared/audit.py) ----
    "invalid-token": _t("Authentication required", "유효하지 않은 토큰", "Bearer 토큰이 유효하지 않습니다."),
    "token-expired": _t("Authentication required", "만료된 토큰", "Bearer 토큰이 만료되었습니다."),
    "no-key": _t("Authentication required", "검증 키 없음", "이 서비스에 토큰 검증 키가 설정되어 있지 않습니다."),
    "keys-unavailable": _t(
        "Token signing keys unavailable",
        "키 목록을 가져올 수 없음",
        "토큰 검증 키(JWKS)를 가져올 수 없습니다. 잠시 후 다시 시도하십시오.",
    ),
    "unknown-participant": _t(
        "Authentication required", "등록되지 않은 참여자", "토큰의 기관은 등록된 참여자가 아닙니다."
    ),
    "participant-suspended": _t("Authentication required", "정지된 참여자", "토큰의 참여자는 정지 상태입니다."),
    "participant-role-mismatch": _t(
        "Authentication required", "참여자 역할 불일치", "토큰의 역할이 참여자 등록부의 역할과 다릅니다."
    ),
    "not-handled": _t(
        "Not allowed", "관계 없음", "원장이 증명하는 이 배터리와의 관계(제조, 보관, 위탁, 인증)가 없습니다."
    ),
    "audit-unavailable": _t(
        "Temporarily unavailable",
        "감사 기록 불가",
        "열람 감사 기록을 남길 수 없어 응답하지 않습니다. 잠시 후 다시 시도하십시오.",
    ),
    "wrong-ministry": _t("Not allowed", "다른 부처의 화면", "이 화면은 해당 부처만 볼 수 있습니다."),
    # ---- registry ----
    "duplicate-battery": _t("Conflict", "중복된 배터리", "이미 등록된 배터리 ID입니다."),
    "duplicate-model": _t("Conflict", "중복된 모델", "이미 등록된 배터리 모델입니다."),
    "duplicate-participant": _t("Conflict", "중복된 참여자", "이미 등록된 참여자입니다."),
    "foreign-gs1-prefix": _t("Not allowed", "다른 기관의 GS1 접두어", "이 GS1 업체 코드는 제조사의 것이 아닙니다."),
    "vin-by-installed": _t(
        "Invalid request", "VIN은 장착 이벤트로", "VIN은 별칭으로 추가할 수 없습니다. INSTALLED 이벤트가 연결합니다."
    ),
    "alias-taken": _t("Conflict", "이미 쓰인 별칭", "이 별칭은 이미 다른 배터리를 가리킵니다."),
    "unknown-alias": _t("Not found", "알 수 없는 별칭", "이 별칭에 해당하는 배터리가 없습니다."),
    "no-checkpoint": _t("Not found", "체크포인트 없음", "투명성 로그의 체크포인트가 아직 포털에 없습니다."),
    # ---- corrections ----
    "already-declared": _t(
        "Already declared in error",
        "이미 오류로 선언됨",
        "이 이벤트는 이미 오류로 선언되었습니다. 한 번만 선언할 수 있습니다.",
    ),
    "correction-window-closed": _t(
        "Correction window closed",
        "정정 기한 지남",
        "최종 상태 이벤트는 게시자가 기한 안에만 오류로 선언할 수 있습니다. 기한이 지나면 관계 기관에 요청하십시오.",
    ),
    "later-events-depend": _t(
        "Later events depend on it",
        "이후 이벤트가 의존함",
        "이 이벤트에 의존하는 이후 이벤트가 있습니다. 이후 이벤트를 최근 것부터 먼저 오류로 선언하십시오.",
    ),
    # ---- vehicles, VINs and recalls ----
    "unknown-vehicle": _t("Not found", "알 수 없는 차량", "조회할 수 있는 차량 중 이 차대번호의 차량이 없습니다."),
    "invalid-vin": _t(
        "Invalid request",
        "올바르지 않은 차대번호",
        "{field}: 차대번호가 ISO 3779 형식(17자, I·O·Q 제외)에 맞지 않습니다.",
    ),
    "unknown-vin": _t("Not found", "알 수 없는 차대번호", "이 가명에 해당하는 차대번호가 없습니다."),
    "not-molit": _t("Not allowed", "국토교통부 전용", "리콜 캠페인은 국토교통부(또는 관리자)만 등록할 수 있습니다."),
    "duplicate-campaign": _t(
        "Conflict", "중복된 리콜 캠페인", "같은 ID의 리콜 캠페인이 다른 내용으로 이미 등록되어 있습니다."
    ),
    "unknown-campaign": _t("Not found", "알 수 없는 리콜 캠페인", "이 ID의 리콜 캠페인이 없습니다."),
    "unknown-recall-campaign": _t(
        "Unknown recall campaign", "등록되지 않은 리콜 캠페인", "{field}: 등록된 리콜 캠페인을 지정해야 합니다."
    ),
    "recall-not-covering": _t(
        "The recall campaign does not cover this battery",
        "리콜 대상이 아닌 배터리",
        "{field}: 지정한 리콜 캠페인은 이 배터리를 대상으로 하지 않습니다.",
    ),
    "recall-campaign-required": _t(
        "Name the recall campaign",
        "리콜 캠페인 지정 필요",
        "{field}: 이 배터리를 대상으로 하는 리콜 캠페인이 있습니다. 해당 캠페인을 지정하십시오.",
    ),
    # ---- passports and the GS1 Digital Link resolver ----
    "unknown-passport": _t("Not found", "알 수 없는 여권", "이 ID의 배터리 여권이 없습니다."),
    "not-the-manufacturer": _t(
        "Not allowed", "제조사가 아님", "이 모델의 여권 정보는 모델의 제조사만 신고할 수 있습니다."
    ),
    "invalid-digital-link": _t(
        "Not a valid GS1 Digital Link",
        "올바르지 않은 GS1 디지털 링크",
        "GS1 디지털 링크의 형식 또는 GTIN 검증 숫자가 올바르지 않습니다.",
    ),
    "unknown-digital-link": _t("Not found", "알 수 없는 디지털 링크", "이 GS1 디지털 링크에 해당하는 대상이 없습니다."),
    "no-digital-link": _t("Not found", "디지털 링크 없음", "이 배터리에는 GS1 디지털 링크가 없습니다."),
    # ---- lifecycle ----
    "unknown-battery": _t("Not found", "알 수 없는 배터리", "등록된 배터리가 아닙니다."),
    "unknown-event": _t("Not found", "알 수 없는 이벤트", "원장에 그런 이벤트가 없습니다."),
    "unknown-parent": _t("Not found", "알 수 없는 상위 배터리", "상위 배터리가 등록되어 있지 않습니다."),
    "event-id-conflict": _t("Event ID conflict", "이벤트 ID 충돌", "이 이벤트 ID는 이미 다른 내용으로 사용되었습니다."),
    "sequence-conflict": _t(
        "Sequence conflict", "순번 충돌", "expected_sequence가 배터리의 현재 순번({current_sequence})과 다릅니다."
    ),
    "illegal-transition": _t(
        "Illegal transition",
        "허용되지 않는 전이",
        "현재 상태 '{current_state}'에서는 이 이벤트를 기록할 수 없습니다. 가능한 다음 이벤트: {allowed_events}.",
    ),
    "not-custodian": _t(
        "Not the custodian",
        "보관자가 아님",
        "이 이벤트는 배터리의 보관자만 기록할 수 있습니다. 현재 보관자: {custodian}.",
    ),
    "not-a-component": _t("Not a component", "구성품이 아님", "이 배터리는 해당 상위 배터리의 현재 구성품이 아닙니다."),
    "depends-on-failed-item": _t(
        "Not applied", "적용되지 않음", "같은 배치에서 이 배터리의 앞선 이벤트가 실패하여 적용되지 않았습니다."
    ),
    "batch-rejected": _t(
        "Batch rejected",
        "배치 거부",
        "배치의 일부 이벤트가 실패하여 아무것도 저장되지 않았습니다. errors에 각 항목이 있습니다.",
    ),
    "ambiguous-event-id": _t(
        "Conflict", "모호한 이벤트 ID", "여러 참여자가 이 이벤트 ID를 사용했습니다. 어느 것인지 지정하십시오."
    ),
    # ---- plausibility (services/events/lifecycle/plausibility.py) ----
    "registration-pending": _t(
        "Registration not yet received",
        "등록 정보 수신 대기",
        "배터리의 등록 정보(소재 함유량)가 아직 이벤트 서비스에 도착하지 않았습니다. 잠시 후 다시 시도하십시오.",
    ),
    "implausible-recovery": _t(
        "Implausible report",
        "타당하지 않은 회수량",
        "{material} 회수량 {recovered_kg} kg이 배터리 함유량 {contained_kg} kg(허용 오차 {tolerance_pct} % 포함 최대 "
        "{limit_kg} kg)을 넘습니다.",
    ),
    "implausible-black-mass": _t(
        "Implausible report",
        "타당하지 않은 블랙매스",
        "블랙매스 {black_mass_kg} kg이 투입 질량 {input_mass_kg} kg을 넘습니다.",
    ),
    "implausible-input-mass": _t(
        "Implausible report",
        "타당하지 않은 투입 질량",
        "투입 질량 {input_mass_kg} kg이 등록 질량 {registered_mass_kg} kg의 ±{band_pct} % 범위({min_kg}~{max_kg} kg)를 "
        "벗어납니다.",
    ),
    "implausible-soh": _t("Implausible report", "타당하지 않은 SoH", "SoH {soh_pct} %가 0~100 % 범위를 벗어납니다."),
    "implausible-soh-rise": _t(
        "Implausible report",
        "타당하지 않은 SoH 상승",
        "SoH {soh_pct} %가 재제조 없이 직전 측정값 {previous_soh_pct} %(이벤트 {previous_event_id})보다 "
        "{margin_pct}%p 넘게 높습니다.",
    ),
    "implausible-cycle-count": _t(
        "Implausible report",
        "타당하지 않은 사이클 수",
        "사이클 수 {cycle_count}가 직전 측정값 {previous_cycle_count}(이벤트 {previous_event_id})보다 적습니다. "
        "사이클 수는 줄지 않습니다.",
    ),
    "implausible-capacity": _t(
        "Implausible report",
        "타당하지 않은 용량",
        "재사용 정격 용량 {rated_capacity_kwh} kWh가 원래 정격 에너지 {original_rated_energy_kwh} kWh를 넘습니다.",
    ),
    "implausible-total": _t(
        "Implausible report",
        "타당하지 않은 누적값",
        "BMS 누적값 {total} {value}이(가) 직전 측정값 {previous_value}(이벤트 {previous_event_id})보다 적습니다. "
        "제조 이후의 누적값은 줄지 않습니다.",
    ),
    "implausible-remaining": _t(
        "Implausible report",
        "타당하지 않은 잔존 용량",
        "BMS 잔존값 {reading} {value}이(가) 배터리 정격값 {rated}을(를) 허용 여유 {margin_pct} %(최대 {limit}) 넘게 "
        "초과합니다.",
    ),
    # ---- ledger and transparency log ----
    "beyond-chain": _t("Invalid request", "체인 범위 밖", "요청한 순번이 배터리 원장의 끝을 넘습니다."),
    "log-not-ready": _t(
        "Temporarily unavailable", "로그 준비 중", "아직 서명된 체크포인트가 없습니다. 잠시 후 다시 시도하십시오."
    ),
    "unknown-checkpoint": _t("Not found", "알 수 없는 체크포인트", "그 트리 크기의 체크포인트는 서명된 적이 없습니다."),
    "not-in-log": _t("Not found", "로그에 없음", "이 이벤트는 아직 투명성 로그에 포함되지 않았습니다."),
    "log-inconsistent": _t(
        "The log's store is inconsistent",
        "로그 저장소 불일치",
        "로그 저장소가 서명된 루트로 검증되지 않는 증명을 내놓았습니다. 운영자에게 알렸습니다.",
    ),
    "unknown-witness": _t("Not found", "알 수 없는 증인", "이 증인의 키는 설정되어 있지 않습니다."),
    # ---- EPCIS ----
    "epcis-schema": _t("Invalid request", "EPCIS 스키마 위반", "문서가 EPCIS 2.0 JSON 스키마에 맞지 않습니다."),
    "epcis-mapping": _t(
        "Invalid request", "EPCIS 매핑 불가", "EPCIS 이벤트를 수명주기 이벤트로 옮길 수 없습니다: {field}."
    ),
    "capture-limit": _t("Payload too large", "캡처 한도 초과", "한 번의 캡처에 담을 수 있는 이벤트 수를 넘습니다."),
    "server-owned-field": _t("Invalid request", "서버가 정하는 필드", "{field}는 서버가 정하는 필드입니다."),
    "not-capturer": _t("Not allowed", "캡처한 참여자가 아님", "이 이벤트는 다른 참여자가 캡처했습니다."),
    "unknown-capture": _t("Not found", "알 수 없는 캡처 작업", "볼 수 있는 캡처 작업 중에 이 ID가 없습니다."),
    # ---- portal UI ----
    "csrf": _t(
        "Not allowed", "요청 위조 방지", "양식의 보안 토큰이 맞지 않습니다. 페이지를 새로 고친 뒤 다시 시도하십시오."
    ),
    "form-too-large": _t("Payload too large", "양식이 너무 큼", "양식 본문이 한도를 넘습니다."),
    "oidc-failed": _t("Authentication required", "로그인 실패", "OpenID Connect 로그인에 실패했습니다."),
    "oidc-unavailable": _t(
        "Temporarily unavailable",
        "로그인 서비스 사용 불가",
        "로그인 제공자에 연결할 수 없습니다. 잠시 후 다시 시도하십시오.",
    ),
    "oidc-claims": _t("Not allowed", "로그인 정보 부족", "로그인 제공자가 필요한 정보(기관, 역할)를 주지 않았습니다."),
    "operators-only": _t("Not allowed", "운영자 전용", "이 화면은 운영자만 볼 수 있습니다."),
    "unknown-ministry": _t("Not found", "알 수 없는 부처", "그런 부처 코드가 없습니다."),
    "unknown-table": _t("Not found", "알 수 없는 표", "그런 표가 없습니다."),
}
