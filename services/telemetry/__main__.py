from services.telemetry.service import TelemetryService

TelemetryService.main()
